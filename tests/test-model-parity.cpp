// Parity with the PyTorch reference (tools/reference/llama_ref.py, float64, Hugging Face
// semantics): logits, log-probabilities and loss with and without a LoRA adapter, LoRA gradients
// and full-parameter gradients, for each model variant written by tools/reference/make_cases.py.
//
// Error measure: max |paft - reference| / max |reference| over a tensor (a relative error that
// stays meaningful when single entries are near zero).
#include "core/backend.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/transformer.h"
#include "train/optimizer.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace paft;

namespace {

const std::string kCases = std::string(PAFT_TESTDATA);

std::vector<int32_t> flatten(const nlohmann::json & rows) {
    std::vector<int32_t> out;
    for (const auto & row : rows) {
        for (const auto & v : row) {
            out.push_back(v.get<int32_t>());
        }
    }
    return out;
}

struct Case {
    std::string            dir;
    std::shared_ptr<Model> model;
    Batch                  batch;
    TensorStore            expected;
    std::vector<uint8_t>   real_logits;  // [B*T*V] 1 where the position is a real token

    explicit Case(const std::string & name)
        : dir(kCases + "/" + name), model(Model::load(dir + "/model")),
          expected(TensorStore::open_file(dir + "/expected.safetensors")) {
        auto j = nlohmann::json::parse(read_file(dir + "/batch.json"));
        int  B = (int) j["input_ids"].size(), T = (int) j["input_ids"][0].size();
        batch  = batch_from_arrays(B, T, flatten(j["input_ids"]), flatten(j["attention_mask"]),
                                   flatten(j["position_ids"]), flatten(j["labels"]), model->config().vocab_size);
        int V  = model->config().vocab_size;
        real_logits.resize((size_t) B * T * V);
        for (size_t n = 0; n < (size_t) B * T; n++) {
            std::fill_n(real_logits.begin() + n * V, V, (uint8_t) batch.attention_mask[n]);
        }
    }

    std::vector<float> want(const std::string & name) const {
        std::vector<int64_t> shape;
        return expected.read_f32_any(name, &shape);
    }
};

class Parity : public ::testing::TestWithParam<std::string> {
protected:
    std::unique_ptr<Backend> backend = make_backend(2);
};

// Checks logits, log-probabilities and loss of one forward pass against the reference's `prefix`.
void check_forward(Transformer & t, Case & c, const LoraAdapter * adapter, const std::string & prefix) {
    const ModelConfig & cfg = c.model->config();
    std::vector<float>  logits((size_t) c.batch.tokens() * cfg.vocab_size);
    const auto &        logp = t.forward(c.batch, adapter, logits.data());
    EXPECT_LE(rel_error(logits.data(), c.want(prefix + ".logits"), &c.real_logits), 1e-5) << prefix << ".logits";
    EXPECT_LE(rel_error(logp.data(), c.want(prefix + ".logprobs")), 1e-5) << prefix << ".logprobs";
    double loss = 0;
    for (float lp : logp) {
        loss -= lp;
    }
    loss /= c.batch.target_count();
    float got = (float) loss;
    EXPECT_LE(rel_error(&got, c.want(prefix + ".loss")), 1e-5) << prefix << ".loss";
}

TEST_P(Parity, ForwardBase) {
    Case        c(GetParam());
    Transformer t(*backend, c.model);
    check_forward(t, c, nullptr, "base");
}

TEST_P(Parity, ForwardLora) {
    Case        c(GetParam());
    LoraAdapter adapter = LoraAdapter::load(c.dir + "/adapter", c.model->config());
    Transformer t(*backend, c.model);
    check_forward(t, c, &adapter, "lora");
}

// LoRA gradients, through both the fused head (forward_backward) and the recomputing one
// (forward, then backward), with the batch's 3 rows split over 2 workers.
TEST_P(Parity, LoraGradients) {
    Case                     c(GetParam());
    LoraAdapter              adapter = LoraAdapter::load(c.dir + "/adapter", c.model->config());
    ParallelTransformer      t(*backend, c.model, 2);
    const std::vector<float> dlogp = mean_nll_gradient(c.batch);
    for (int fused = 0; fused < 2; fused++) {
        adapter.zero_grads();
        if (fused) {
            t.forward_backward(c.batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
        } else {
            t.forward(c.batch, &adapter);
            t.backward(c.batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
        }
        int checked = 0;
        for (int l = 0; l < c.model->config().num_layers; l++) {
            for (int target = 0; target < TARGET_COUNT; target++) {
                if (!adapter.has(l, target)) {
                    continue;
                }
                for (char which : {'A', 'B'}) {
                    std::string   key  = adapter.peft_key(l, target, which);
                    const float * grad = which == 'A' ? adapter.dA(l, target) : adapter.dB(l, target);
                    std::vector<float> want = c.want("lora.grad." + key);
                    EXPECT_LE(rel_error(grad, want), 1e-4) << key << (fused ? " (fused head)" : " (recomputed head)");
                    checked++;
                }
            }
        }
        EXPECT_GT(checked, 0);
    }
}

// Full-parameter gradients, on one worker (every kernel multithreaded) and on two.
TEST_P(Parity, FullGradients) {
    Case                     c(GetParam());
    const std::vector<float> dlogp = mean_nll_gradient(c.batch);
    for (int workers = 1; workers <= 2; workers++) {
        ParallelTransformer t(*backend, c.model, workers);
        std::vector<float>  grads(c.model->size(), 0.0f);
        t.forward_backward(c.batch, nullptr, dlogp.data(), {nullptr, grads.data()});
        for (const ParamEntry & e : c.model->layout().entries()) {
            std::vector<float> want = c.want("full.grad." + e.name);
            ASSERT_EQ(want.size(), e.numel()) << e.name;
            EXPECT_LE(rel_error(grads.data() + e.offset, want), 1e-4) << e.name << ", " << workers << " worker(s)";
        }
    }
}

// The same inputs, seed and thread count give bit-identical results.
TEST_P(Parity, Deterministic) {
    Case                     c(GetParam());
    LoraAdapter              adapter = LoraAdapter::load(c.dir + "/adapter", c.model->config());
    ParallelTransformer      t(*backend, c.model, 2);
    const std::vector<float> dlogp = mean_nll_gradient(c.batch);
    std::vector<float>       first_grads, first_logp;
    for (int run = 0; run < 2; run++) {
        adapter.zero_grads();
        const auto & logp = t.forward_backward(c.batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
        if (run == 0) {
            first_grads = adapter.grads();
            first_logp  = logp;
        } else {
            EXPECT_EQ(first_grads, adapter.grads());
            EXPECT_EQ(first_logp, logp);
        }
    }
}

// Five AdamW steps (torch's defaults but lr 1e-2) from the case's adapter on its batch: the loss
// before each step and the final adapter, against the reference's float64 run.
TEST_P(Parity, AdamWTrajectory) {
    Case                     c(GetParam());
    LoraAdapter              adapter = LoraAdapter::load(c.dir + "/adapter", c.model->config());
    ParallelTransformer      t(*backend, c.model, 2);
    OptimizerConfig          config;
    config.weight_decay = 0.01;  // torch.optim.AdamW's default
    auto                     optimizer = make_optimizer(config, adapter.params().size());
    const std::vector<float> dlogp  = mean_nll_gradient(c.batch);
    const std::vector<float> losses = c.want("train.losses");
    for (size_t step = 0; step < losses.size(); step++) {
        adapter.zero_grads();
        const auto & logp = t.forward_backward(c.batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
        double       loss = 0;
        for (float lp : logp) {
            loss -= lp;
        }
        float got = (float) (loss / c.batch.target_count());
        EXPECT_LE(rel_error(&got, {losses[step]}), 1e-5) << "step " << step;
        optimizer->step(adapter.params().data(), adapter.grads().data(), 1e-2);
    }
    for (int l = 0; l < c.model->config().num_layers; l++) {
        for (int target = 0; target < TARGET_COUNT; target++) {
            for (char which : {'A', 'B'}) {
                if (adapter.has(l, target)) {
                    std::string key = adapter.peft_key(l, target, which);
                    EXPECT_LE(rel_error(which == 'A' ? adapter.A(l, target) : adapter.B(l, target),
                                        c.want("train.final." + key)),
                              1e-4)
                        << key;
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, Parity,
                         ::testing::Values("llama_mha_f32", "llama_gqa_tied_bf16", "llama3_rope_f16",
                                           "mistral_swa_sharded", "qwen2_bias_tied", "mistral_long_window"));

// The case list above is the generator's list: a case added there must be tested here.
TEST(ParityCases, ListMatchesGenerator) {
    auto                     j = nlohmann::json::parse(read_file(kCases + "/cases.json"));
    std::vector<std::string> names;
    for (const auto & n : j) {
        names.push_back(n.get<std::string>());
    }
    std::sort(names.begin(), names.end());
    std::vector<std::string> tested = {"llama3_rope_f16",     "llama_gqa_tied_bf16", "llama_mha_f32",
                                       "mistral_long_window", "mistral_swa_sharded", "qwen2_bias_tied"};
    EXPECT_EQ(names, tested);
}

}  // namespace
