// LoRA layers: finite-difference checks of the A and B gradients (with and without dropout),
// PEFT's initialisation, and the PEFT directory round trip.
#include "core/backend.h"
#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/transformer.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

using namespace paft;

namespace {

ModelConfig tiny_config() {
    ModelConfig c;
    c.hidden_size       = 16;
    c.intermediate_size = 24;
    c.num_layers        = 2;
    c.num_heads         = 4;
    c.num_kv_heads      = 2;
    c.head_dim          = 4;
    c.vocab_size        = 50;
    c.attention_bias    = true;
    return c;
}

Batch tiny_batch(int vocab) {
    Random                            rng(11);
    std::vector<std::vector<int32_t>> rows = {std::vector<int32_t>(7), std::vector<int32_t>(5)};
    for (auto & row : rows) {
        for (auto & id : row) {
            id = (int32_t) (rng.next_u64() % vocab);
        }
    }
    return batch_from_rows(rows, nullptr, 0, false, vocab);
}

// A model with weights large enough that the loss depends visibly on every LoRA entry.
std::shared_ptr<Model> tiny_model() {
    auto   model = Model::random(tiny_config(), 5);
    Random rng(6);
    for (size_t i = 0; i < model->size(); i++) {
        model->data()[i] += 0.2f * rng.normal();
    }
    return model;
}

// An adapter on q_proj and v_proj only, r = 2, with random A and B.
LoraAdapter qv_adapter(const ModelConfig & c) {
    LoraConfig lc;
    lc.r       = 2;
    lc.targets = parse_lora_targets("q_proj,v_proj");
    LoraAdapter adapter(c, lc);
    Random      rng(4);
    for (float & p : adapter.params()) {
        p = 0.3f * rng.normal();
    }
    return adapter;
}

LoraAdapter random_adapter(const ModelConfig & c, float dropout) {
    LoraConfig lc;
    lc.r       = 3;
    lc.alpha   = 6.0f;
    lc.dropout = dropout;
    lc.targets.fill(true);
    LoraAdapter adapter(c, lc);
    Random      rng(9);
    for (float & p : adapter.params()) {
        p = 0.3f * rng.normal();
    }
    return adapter;
}

double mean_nll(Transformer & t, const Batch & b, const LoraAdapter & adapter) {
    const auto & logp = t.forward(b, &adapter);
    double       sum  = 0;
    for (float lp : logp) {
        sum -= lp;
    }
    return sum / b.target_count();
}

// Central differences of the mean NLL on every 7th LoRA parameter against the analytic gradient.
void check_lora_gradients(float dropout) {
    auto                     model   = tiny_model();
    LoraAdapter              adapter = random_adapter(model->config(), dropout);
    Batch                    batch   = tiny_batch(model->config().vocab_size);
    auto                     backend = make_backend(2);
    Transformer              t(*backend, model);
    t.set_training(dropout > 0, 42, 3);  // the same seed and step give the same dropout masks
    const std::vector<float> dlogp = mean_nll_gradient(batch);
    adapter.zero_grads();
    t.forward_backward(batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
    std::vector<float> analytic = adapter.grads();

    const float         h = 3e-3f;
    std::vector<double> numeric, sampled;
    double              largest = 0;
    for (size_t i = 0; i < adapter.params().size(); i += 7) {
        float saved         = adapter.params()[i];
        adapter.params()[i] = saved + h;
        double plus         = mean_nll(t, batch, adapter);
        adapter.params()[i] = saved - h;
        double minus        = mean_nll(t, batch, adapter);
        adapter.params()[i] = saved;
        numeric.push_back((plus - minus) / (2.0 * h));
        sampled.push_back(analytic[i]);
        largest = std::max(largest, std::fabs(numeric.back()));
    }
    ASSERT_GT(largest, 1e-3);  // the loss really depends on the adapter
    // f32 forward: rounding noise ~1e-6/h and O(h^2) truncation (measured: 2e-4 without dropout,
    // 1.3e-3 with; the error falls 100x when h falls 10x, as truncation error should).
    EXPECT_LE(rel_error(sampled, numeric), 1e-2);
}

TEST(Lora, GradientsMatchFiniteDifferences) {
    check_lora_gradients(0.0f);
}

TEST(Lora, GradientsWithDropoutMatchFiniteDifferences) {
    check_lora_gradients(0.25f);
}

TEST(Lora, DropoutOnlyInTraining) {
    auto        model   = tiny_model();
    LoraAdapter adapter = random_adapter(model->config(), 0.5f);
    Batch       batch   = tiny_batch(model->config().vocab_size);
    auto        backend = make_backend(2);
    Transformer t(*backend, model);
    double      eval_loss = mean_nll(t, batch, adapter);
    t.set_training(true, 1, 0);
    double train0 = mean_nll(t, batch, adapter);
    double again  = mean_nll(t, batch, adapter);
    t.set_training(true, 1, 1);
    double train1 = mean_nll(t, batch, adapter);
    EXPECT_NE(eval_loss, train0);
    EXPECT_EQ(train0, again);   // masks depend on (seed, step) only
    EXPECT_NE(train0, train1);  // and change from step to step
}

TEST(Lora, PeftInitialisation) {
    auto        model = tiny_model();
    LoraConfig  lc;
    lc.r = 4;
    lc.targets.fill(true);
    LoraAdapter adapter(model->config(), lc);
    adapter.init_peft(1);
    for (int l = 0; l < model->config().num_layers; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            const float   bound = 1.0f / std::sqrt((float) adapter.in_features(t));
            const float * a     = adapter.A(l, t);
            float         max_a = 0;
            for (int i = 0; i < lc.r * adapter.in_features(t); i++) {
                max_a = std::max(max_a, std::fabs(a[i]));
            }
            EXPECT_LE(max_a, bound);
            EXPECT_GT(max_a, 0.5f * bound);  // uniform over the whole range, not a narrow one
            for (int i = 0; i < adapter.out_features(t) * lc.r; i++) {
                ASSERT_EQ(adapter.B(l, t)[i], 0.0f);
            }
        }
    }
    // B = 0: the adapted model is exactly the base model.
    Batch       batch   = tiny_batch(model->config().vocab_size);
    auto        backend = make_backend(2);
    Transformer t(*backend, model);
    std::vector<float> base = t.forward(batch, nullptr);
    EXPECT_EQ(base, t.forward(batch, &adapter));
}

TEST(Lora, Scale) {
    LoraConfig lc;
    lc.r     = 16;
    lc.alpha = 32;
    EXPECT_FLOAT_EQ(lc.scale(), 2.0f);
    lc.rslora = true;
    EXPECT_FLOAT_EQ(lc.scale(), 8.0f);  // alpha / sqrt(r)
}

TEST(Lora, PeftDirectoryRoundTrip) {
    auto        model   = tiny_model();
    LoraAdapter adapter = random_adapter(model->config(), 0.1f);
    std::string dir     = (std::filesystem::temp_directory_path() / "paft-test-lora-roundtrip").string();
    std::filesystem::remove_all(dir);
    adapter.save(dir, "base/model");
    auto j = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
    EXPECT_EQ(j["peft_type"], "LORA");
    EXPECT_EQ(j["r"], 3);
    EXPECT_EQ(j["lora_alpha"], 6.0);
    EXPECT_EQ(j["target_modules"].size(), 7u);
    EXPECT_EQ(j["base_model_name_or_path"], "base/model");
    LoraAdapter loaded = LoraAdapter::load(dir, model->config());
    EXPECT_EQ(loaded.params(), adapter.params());
    EXPECT_EQ(loaded.config().r, 3);
    EXPECT_FLOAT_EQ(loaded.config().dropout, 0.1f);
    EXPECT_EQ(adapter.peft_key(1, TARGET_DOWN, 'B'), "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
    std::filesystem::remove_all(dir);
}

TEST(Lora, UnknownTargetIsAnError) {
    EXPECT_THROW(parse_lora_targets("q_proj,c_attn"), InputError);
    auto t = parse_lora_targets("all-linear");
    EXPECT_TRUE(t[TARGET_Q] && t[TARGET_DOWN]);
}


// Misuse inside the workers' parallel region comes back as an exception, not a crash.
TEST(ParallelTransformer, ErrorsInWorkersAreRethrown) {
    auto                model   = tiny_model();
    LoraAdapter         adapter = random_adapter(model->config(), 0.0f);
    Batch               batch   = tiny_batch(model->config().vocab_size);
    auto                backend = make_backend(2);
    ParallelTransformer t(*backend, model, 2);
    std::vector<float>  dlogp = mean_nll_gradient(batch);
    EXPECT_THROW(t.backward(batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr}), RuntimeFailure);
    t.forward(batch, &adapter);
    // backward with another adapter than the forward's: each worker refuses
    EXPECT_THROW(t.backward(batch, nullptr, dlogp.data(), {}), RuntimeFailure);
}


Batch random_batch(int B, int T, int vocab, uint64_t seed) {
    Random                            rng(seed);
    std::vector<std::vector<int32_t>> rows(B, std::vector<int32_t>(T));
    for (auto & row : rows) {
        for (auto & id : row) {
            id = (int32_t) (rng.next_u64() % vocab);
        }
    }
    return batch_from_rows(rows, nullptr, 0, false, vocab);
}

// One engine reused over batches of other shapes and adapters with other targets gives exactly
// what a fresh engine gives: nothing stale survives from the previous call.
TEST(ParallelTransformer, ReuseMatchesFreshInstances) {
    auto                             model = tiny_model();
    LoraAdapter                      small = qv_adapter(model->config());
    LoraAdapter                      all   = random_adapter(model->config(), 0.0f);
    auto                             backend = make_backend(2);
    ParallelTransformer              reused(*backend, model, 2);
    const std::vector<LoraAdapter *> adapters = {&all, &small, nullptr, &all};
    const int                        shapes[][2] = {{3, 9}, {2, 5}, {1, 70}, {3, 9}};
    for (int k = 0; k < 4; k++) {
        Batch              b     = random_batch(shapes[k][0], shapes[k][1], model->config().vocab_size, 20 + k);
        std::vector<float> dlogp = mean_nll_gradient(b);
        LoraAdapter *      a     = adapters[k];
        std::vector<float> g1(a ? a->params().size() : 0), g2(g1.size());
        std::vector<float> logp1 = reused.forward_backward(b, a, dlogp.data(), {a ? g1.data() : nullptr, nullptr});
        ParallelTransformer fresh(*backend, model, 2);
        std::vector<float>  logp2 = fresh.forward_backward(b, a, dlogp.data(), {a ? g2.data() : nullptr, nullptr});
        EXPECT_EQ(logp1, logp2) << "call " << k;
        EXPECT_EQ(g1, g2) << "call " << k;
    }
}

TEST(ParallelTransformer, BackwardNeedsTheForwardsBatchShape) {
    auto                model   = tiny_model();
    LoraAdapter         adapter = random_adapter(model->config(), 0.0f);
    auto                backend = make_backend(2);
    ParallelTransformer t(*backend, model, 2);
    Batch               b2x6 = random_batch(2, 6, model->config().vocab_size, 1);
    Batch               b3x4 = random_batch(3, 4, model->config().vocab_size, 2);
    std::vector<float>  dlogp = mean_nll_gradient(b3x4);
    t.forward(b2x6, &adapter);
    EXPECT_THROW(t.backward(b3x4, &adapter, dlogp.data(), {adapter.grads().data(), nullptr}), RuntimeFailure);
}


// target_modules as PEFT reads it: a list of names or suffixes, or a full-match regex.
TEST(Lora, PeftTargetModulesForms) {
    auto        model   = tiny_model();
    LoraAdapter adapter = qv_adapter(model->config());
    std::string dir = (std::filesystem::temp_directory_path() / "paft-test-lora-targets").string();
    std::filesystem::remove_all(dir);
    adapter.save(dir, "");
    auto load_with = [&](const nlohmann::json & targets) {
        auto j              = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
        j["target_modules"] = targets;
        write_file_atomic(dir + "/adapter_config.json", j.dump());
        return LoraAdapter::load(dir, model->config()).config().targets;
    };
    const auto want = adapter.config().targets;
    using json = nlohmann::json;
    EXPECT_EQ(load_with(json::array({"self_attn.q_proj", "v_proj"})), want);
    EXPECT_EQ(load_with(json(".*\\.(q_proj|v_proj)")), want);
    EXPECT_THROW(load_with(json("q_proj")), InputError);  // a regex must match the whole path
    EXPECT_THROW(load_with(json("model\\.layers\\.0\\..*_proj")), InputError);  // only some layers
    EXPECT_THROW(load_with(json::array()), InputError);
    EXPECT_THROW(load_with(json("(")), InputError);  // not a valid expression
    // Options that would change which layers or modules an adapter covers are refused.
    for (const char * field : {"layers_to_transform", "modules_to_save"}) {
        auto j              = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
        j["target_modules"] = json::array({"q_proj", "v_proj"});
        j[field]            = field == std::string("modules_to_save") ? json::array({"lm_head"}) : json::array({0});
        write_file_atomic(dir + "/adapter_config.json", j.dump());
        EXPECT_THROW(LoraAdapter::load(dir, model->config()), InputError) << field;
    }
    std::filesystem::remove_all(dir);
}

}  // namespace

namespace {

// With a 140k vocabulary the head works in chunks of ~119 tokens, so a batch of 2 x 90 tokens
// crosses a chunk boundary inside a row; each row alone fits one chunk. The two ways must agree
// (the head is per token), for the log-probabilities and, through both head paths, the gradients.
TEST(Transformer, HeadChunksMatchSingleChunk) {
    ModelConfig c = tiny_config();
    c.vocab_size  = 140000;
    auto        model   = Model::random(c, 8);
    LoraAdapter adapter = random_adapter(c, 0.0f);
    auto        backend = make_backend(2);
    Batch       both    = random_batch(2, 90, c.vocab_size, 5);
    // Different weights per token, so that a chunk reading another chunk's weights shows.
    std::vector<float> dlogp = mean_nll_gradient(both);
    Random             rng(6);
    for (float & d : dlogp) {
        d *= 0.5f + rng.uniform();
    }

    Transformer        t(*backend, model);
    std::vector<float> fused(adapter.params().size()), recomputed(fused.size()), rows(fused.size());
    std::vector<float> logp = t.forward_backward(both, &adapter, dlogp.data(), {fused.data(), nullptr});
    t.forward(both, &adapter);
    t.backward(both, &adapter, dlogp.data(), {recomputed.data(), nullptr});

    std::vector<float> logp_rows;
    for (int b = 0; b < 2; b++) {
        std::vector<int32_t> ids(both.input_ids.begin() + b * 90, both.input_ids.begin() + (b + 1) * 90);
        Batch                row = batch_from_rows({ids}, nullptr, 0, false, c.vocab_size);
        std::vector<float>   d(dlogp.begin() + b * 90, dlogp.begin() + (b + 1) * 90);
        const auto &         lp = t.forward_backward(row, &adapter, d.data(), {rows.data(), nullptr});
        logp_rows.insert(logp_rows.end(), lp.begin(), lp.end());
    }
    EXPECT_LE(rel_error(logp.data(), logp_rows), 1e-5);
    EXPECT_LE(rel_error(fused.data(), rows), 1e-4);
    EXPECT_LE(rel_error(recomputed.data(), rows), 1e-4);
}

}  // namespace
