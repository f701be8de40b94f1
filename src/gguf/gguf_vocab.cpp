#include "gguf/gguf_vocab.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "tokenizer/tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <unordered_map>

namespace paft {

namespace {

using json = nlohmann::json;

// llama.cpp's token types (llama_token_type).
enum TokenType : int32_t { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

// Byte-level split patterns llama.cpp knows, by its pre-tokenizer name. The name also sets
// llama.cpp's ignore_merges (a piece that is a token is emitted whole, merges or not): on for
// "llama-bpe", as Llama 3's tokenizer.json says it; off for "qwen2" and "gpt-2", as theirs say
// (a file that says otherwise differs from llama.cpp on the words its merges do not build).
struct KnownPattern {
    const char * pre;
    const char * regex;
};
constexpr KnownPattern kPatterns[] = {
    {"llama-bpe",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
     "\\s+(?!\\S)|\\s+"},
    {"qwen2",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
     "\\s+(?!\\S)|\\s+"},
    {"gpt-2", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
};

[[noreturn]] void refuse(const std::string & file, const std::string & what) {
    throw InputError(fmt::format("{}: {} (llama.cpp's GGUF vocabularies cannot represent it)", file, what));
}

// The list of steps of a normalizer or pre-tokenizer (a Sequence's members, or the one step).
std::vector<json> steps(const json & node, const char * members) {
    if (node.is_null()) return {};
    if (node.value("type", "") == "Sequence" && node.contains(members)) return node[members].get<std::vector<json>>();
    return {node};
}

enum class Family { SentencePiece, ByteLevel };

struct Analysis {
    Family      family;
    std::string pre;                // byte level: llama.cpp's pre-tokenizer name
    bool        add_space_prefix = false;
    std::vector<std::string> notes;  // where llama.cpp will tokenize differently (paft export prints them)
};

Analysis analyse(const json & tok, const std::string & file) {
    const json & model = tok["model"];
    const std::string type = model.value("type", "");
    if (type != "BPE") refuse(file, fmt::format("model.type '{}' (only BPE tokenizers can be exported)", type));
    Analysis a{};
    bool     byte_level = false;
    std::string regex;
    for (const json & s : steps(tok.value("pre_tokenizer", json()), "pretokenizers")) {
        const std::string t = s.value("type", "");
        if (t == "ByteLevel") {
            byte_level = true;
            if (s.value("use_regex", true)) regex = kPatterns[2].regex;  // GPT-2's own pattern
            if (s.value("add_prefix_space", false)) refuse(file, "pre_tokenizer ByteLevel with add_prefix_space");
        } else if (t == "Split" && s.contains("pattern") && s["pattern"].contains("Regex")) {
            if (!regex.empty()) refuse(file, "pre_tokenizer with two split patterns");
            regex = s["pattern"]["Regex"].get<std::string>();
        } else if (t == "Metaspace") {
            // Hugging Face's Metaspace prepends "▁" only where the text does not start with a space
            // (and, for prepend_scheme "first", only at the start of the text, not after a special
            // token); llama.cpp, as SentencePiece, prepends one before every text fragment. The one
            // flag cannot say more: such a tokenizer gets the legacy Prepend normalizer's file, and
            // llama.cpp's ids differ from Hugging Face's where a text fragment starts with a space
            // (or, for "first", follows a special token).
            const std::string scheme = s.value("prepend_scheme", s.value("add_prefix_space", true) ? "always" : "never");
            a.add_space_prefix = scheme != "never";
            if (s.value("split", false)) refuse(file, "pre_tokenizer Metaspace with split: true");
            a.notes.push_back(fmt::format(
                "{}: a Metaspace pre-tokenizer (prepend_scheme {}): llama.cpp puts \u2581 before every text fragment, "
                "so its ids differ where a fragment starts with a space or follows a special token",
                file, scheme));
        } else {
            refuse(file, "pre_tokenizer " + json_snippet(s));
        }
    }
    if (byte_level) {
        a.family = Family::ByteLevel;
        for (const KnownPattern & p : kPatterns) {
            if (regex == p.regex) a.pre = p.pre;
        }
        if (a.pre.empty()) refuse(file, "the byte-level split pattern " + json(regex).dump());
        for (const json & n : steps(tok.value("normalizer", json()), "normalizers")) {
            // llama.cpp does not normalise: text already in NFC (nearly all text) gets the same ids,
            // other text the ids of its bytes as given (the NFC form of it gets Hugging Face's).
            if (n.value("type", "") != "NFC") refuse(file, "normalizer " + json_snippet(n));
            a.notes.push_back(fmt::format("{}: an NFC normalizer: llama.cpp does not normalise, so text not in NFC "
                                          "gets other ids than here (its NFC form gets the same)",
                                          file));
        }
        return a;
    }
    if (!model.value("byte_fallback", false)) {
        refuse(file, "a BPE model that is neither byte-level nor SentencePiece-style with byte_fallback");
    }
    a.family = Family::SentencePiece;
    for (const json & n : steps(tok.value("normalizer", json()), "normalizers")) {
        const std::string t = n.value("type", "");
        if (t == "Prepend" && n.value("prepend", "") == "\u2581") {
            a.add_space_prefix = true;
        } else if (t == "Replace" && n.contains("pattern") && n["pattern"].value("String", "") == " " &&
                   n.value("content", "") == "\u2581") {
        } else {
            refuse(file, "normalizer " + json_snippet(n));
        }
    }
    return a;
}

std::string merge_text(const json & m) {
    if (m.is_string()) return m.get<std::string>();
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        return m[0].get<std::string>() + " " + m[1].get<std::string>();
    }
    throw InputError("tokenizer.json: model.merges: an entry is neither \"a b\" nor [\"a\", \"b\"]: " + json_snippet(m));
}

bool is_byte_token(const std::string & s) {
    return s.size() == 6 && s.starts_with("<0x") && s.back() == '>' && std::isxdigit((unsigned char) s[3]) &&
           std::isxdigit((unsigned char) s[4]);
}

}  // namespace

std::vector<std::string> write_vocab_metadata(GgufWriter & w, const std::string & model_dir, const ModelConfig & config) {
    const std::string file = (std::filesystem::path(model_dir) / "tokenizer.json").string();
    if (!path_exists(file)) {
        throw InputError(fmt::format("{}: missing (a GGUF model carries its tokenizer; export needs tokenizer.json)", file));
    }
    const std::string text = read_file(file);
    check_json_depth(text, file);
    const json tok = json::parse(text, nullptr, false);
    if (tok.is_discarded() || !tok.is_object() || !tok.contains("model") || !tok["model"].is_object()) {
        throw InputError(file + ": not a tokenizer.json with a model");
    }
    // The model type first: a Unigram model's vocab is a list, and the refusal should name the type.
    const Analysis a = analyse(tok, file);
    if (!tok["model"].contains("vocab") || !tok["model"]["vocab"].is_object()) {
        throw InputError(file + ": model.vocab is not an object of token ids");
    }
    const Tokenizer tokenizer = Tokenizer::load(model_dir);  // ids, special tokens, the template

    // Tokens by id: the model's vocabulary, then the added tokens.
    std::vector<std::string> tokens;
    std::vector<int32_t>     types;
    auto put = [&](int64_t id, const std::string & text, int32_t type) {
        if (id < 0 || id >= config.vocab_size) {
            throw InputError(fmt::format("{}: token {} has id {}, outside the model's vocab_size {}", file,
                                         json(text).dump(), id, config.vocab_size));
        }
        if ((size_t) id >= tokens.size()) {
            tokens.resize((size_t) id + 1);
            types.resize((size_t) id + 1, 0);
        }
        tokens[(size_t) id] = text;
        types[(size_t) id]  = type;
    };
    const std::string unk = tok["model"].value("unk_token", json()).is_string() ? tok["model"]["unk_token"].get<std::string>() : "";
    for (const auto & [text, id] : tok["model"]["vocab"].items()) {
        if (!id.is_number_integer()) throw InputError(fmt::format("{}: model.vocab[{}] is not an id", file, json(text).dump()));
        int32_t type = NORMAL;
        if (a.family == Family::SentencePiece && is_byte_token(text)) type = BYTE;
        if (!unk.empty() && text == unk) type = UNKNOWN;
        put(id.get<int64_t>(), text, type);
    }
    if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
        for (const json & t : tok["added_tokens"]) {
            const std::string text = t.value("content", "");
            // llama.cpp cuts control tokens out of text only when asked to parse special tokens,
            // user-defined ones always (Hugging Face cuts out every added token). It also makes
            // some tokens control by their text, whatever their type here (its end-of-generation
            // and fill-in-the-middle names: "</s>", "<|fim_prefix|>", ...); in Qwen2's vocabulary
            // "</s>" is an ordinary token, so llama.cpp parses it out of text where Hugging Face
            // splits it as "</", "s", ">".
            int32_t           type = t.value("special", false) ? CONTROL : USER_DEFINED;
            if (!unk.empty() && text == unk) type = UNKNOWN;
            put(t.value("id", (int64_t) -1), text, type);
        }
    }
    for (size_t id = 0; id < (size_t) config.vocab_size; id++) {
        if (id >= tokens.size()) {
            tokens.resize(id + 1);
            types.resize(id + 1, 0);
        }
        if (types[id] == 0) {
            tokens[id] = fmt::format("[PAD{}]", id);
            types[id]  = UNUSED;
        }
    }

    std::vector<std::string> merges;
    if (tok["model"].contains("merges") && tok["model"]["merges"].is_array()) {
        for (const json & m : tok["model"]["merges"]) merges.push_back(merge_text(m));
    }

    if (a.family == Family::SentencePiece) {
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_string("tokenizer.ggml.pre", "default");
        // llama.cpp merges the adjacent pair whose concatenation has the highest score.
        std::unordered_map<std::string, float> score_of;
        for (size_t rank = 0; rank < merges.size(); rank++) {
            const size_t sp = merges[rank].find(' ');
            if (sp == std::string::npos) throw InputError(fmt::format("{}: model.merges[{}] has no space", file, rank));
            score_of.emplace(merges[rank].substr(0, sp) + merges[rank].substr(sp + 1), -(float) rank);
        }
        std::vector<float> scores(tokens.size(), 0.0f);
        for (size_t id = 0; id < tokens.size(); id++) {
            if (types[id] != NORMAL) continue;
            if (auto it = score_of.find(tokens[id]); it != score_of.end()) scores[id] = it->second;
        }
        w.set_strings("tokenizer.ggml.tokens", tokens);
        w.set_f32s("tokenizer.ggml.scores", scores);
        w.set_i32s("tokenizer.ggml.token_type", types);
        w.set_bool("tokenizer.ggml.add_space_prefix", a.add_space_prefix);
    } else {
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_string("tokenizer.ggml.pre", a.pre);
        w.set_strings("tokenizer.ggml.tokens", tokens);
        w.set_i32s("tokenizer.ggml.token_type", types);
        w.set_strings("tokenizer.ggml.merges", merges);
    }

    // Special tokens: tokenizer_config.json's, else config.json's ids.
    auto set_id = [&](const char * key, std::optional<int32_t> id) {
        if (id && *id >= 0 && *id < config.vocab_size) w.set_u32(key, (uint32_t) *id);
    };
    const std::optional<int32_t> bos = tokenizer.bos_id() ? tokenizer.bos_id()
                                       : config.bos_token_id >= 0 ? std::optional<int32_t>(config.bos_token_id)
                                                                  : std::nullopt;
    const std::optional<int32_t> eos = tokenizer.eos_id() ? tokenizer.eos_id()
                                       : config.eos_token_id >= 0 ? std::optional<int32_t>(config.eos_token_id)
                                                                  : std::nullopt;
    set_id("tokenizer.ggml.bos_token_id", bos);
    set_id("tokenizer.ggml.eos_token_id", eos);
    if (!unk.empty()) set_id("tokenizer.ggml.unknown_token_id", tokenizer.piece_to_id(unk));
    set_id("tokenizer.ggml.padding_token_id", tokenizer.pad_id());
    // Whether encoding adds BOS / EOS, as the tokenizer's post-processor does it.
    const std::vector<int32_t> plain = tokenizer.encode("a", false), full = tokenizer.encode("a", true);
    const bool add_bos = full.size() > plain.size() && bos && full.front() == *bos;
    const bool add_eos = full.size() > plain.size() && eos && full.back() == *eos;
    if (full.size() > plain.size() + (size_t) add_bos + (size_t) add_eos) {
        refuse(file, "a post-processor that adds tokens other than BOS and EOS");
    }
    w.set_bool("tokenizer.ggml.add_bos_token", add_bos);
    w.set_bool("tokenizer.ggml.add_eos_token", add_eos);
    if (!tokenizer.config().chat_template.empty()) w.set_string("tokenizer.chat_template", tokenizer.config().chat_template);
    return a.notes;
}

}  // namespace paft
