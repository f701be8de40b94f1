// Activation recomputation (gradient checkpointing): with it on, logp and every gradient are
// bit-identical to the engine that keeps all activations (the same kernels run on the same
// inputs, dropout masks are redrawn from the forward's seed and step), which the parity tests
// check against PyTorch. The configurations cover LoRA with and without dropout, padded and
// packed batches, GQA, biases and tied embeddings (Qwen2-like), a sliding window, full-parameter
// gradients, both head paths, and data parallelism over two workers.
#include "core/backend.h"
#include "core/random.h"
#include "data/packing.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/presets.h"
#include "model/transformer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

using namespace paft;

namespace {

// The tiny preset (hidden 64, 4 query heads over 2 key-value heads: GQA) with 3 layers, so that
// the backward recomputes some layers and reuses the last one's buffers.
ModelConfig three_layers() {
    ModelConfig c = model_preset("tiny");
    c.num_layers  = 3;
    return c;
}

ModelConfig qwen2_like() {
    ModelConfig c         = three_layers();
    c.architecture        = Architecture::Qwen2;
    c.architecture_name   = "Qwen2ForCausalLM";
    c.attention_bias      = true;
    c.tie_word_embeddings = true;
    return c;
}

ModelConfig mistral_like() {
    ModelConfig c    = three_layers();
    c.num_kv_heads   = 4;  // MHA
    c.sliding_window = 5;
    c.mlp_bias       = true;
    c.o_proj_bias    = true;
    return c;
}

// Random weights, with the biases and norms moved away from their initial values too.
std::shared_ptr<Model> random_model(const ModelConfig & c) {
    auto   model = Model::random(c, 3);
    Random rng(4);
    for (size_t i = 0; i < model->size(); i++) {
        model->data()[i] += 0.05f * rng.normal();
    }
    return model;
}

LoraAdapter random_adapter(const ModelConfig & c, float dropout) {
    LoraConfig lc;
    lc.r       = 4;
    lc.alpha   = 8.0f;
    lc.dropout = dropout;
    lc.targets.fill(true);
    LoraAdapter adapter(c, lc);
    Random      rng(9);
    for (float & p : adapter.params()) {
        p = 0.2f * rng.normal();
    }
    return adapter;
}

std::vector<int32_t> random_ids(Random & rng, int n, int vocab) {
    std::vector<int32_t> ids(n);
    for (int32_t & id : ids) {
        id = (int32_t) (rng.next_u64() % vocab);
    }
    return ids;
}

// Rows of different lengths, right-padded.
Batch padded_batch(int vocab) {
    Random rng(21);
    return batch_from_rows({random_ids(rng, 13, vocab), random_ids(rng, 6, vocab), random_ids(rng, 10, vocab)},
                           nullptr, 0, false, vocab);
}

// Five examples packed into rows of 16 tokens: doc_start keeps attention inside each example.
Batch packed_batch(int vocab) {
    Random                  rng(22);
    std::vector<SftExample> examples;
    for (int n : {9, 7, 5, 4, 6}) {
        SftExample e;
        e.input_ids = random_ids(rng, n, vocab);
        e.labels    = e.input_ids;
        examples.push_back(e);
    }
    Batch batch = batch_from_packed(pack_examples(examples, 16), 0, vocab);
    EXPECT_FALSE(batch.doc_start.empty());
    return batch;
}

// Different weights per position, so that a gradient read from the wrong position would show.
std::vector<float> weighted_dlogp(const Batch & batch) {
    std::vector<float> d = mean_nll_gradient(batch);
    Random             rng(5);
    for (float & x : d) {
        x *= 0.5f + rng.uniform();
    }
    return d;
}

struct Result {
    std::vector<float> logp, lora, full;
};

bool same_bits(const std::vector<float> & a, const std::vector<float> & b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool any_nonzero(const std::vector<float> & v) {
    for (float x : v) {
        if (x != 0.0f) {
            return true;
        }
    }
    return false;
}

struct Setup {
    bool  lora    = true;
    float dropout = 0.0f;  // LoRA dropout, in training mode
    bool  full    = false;  // full-parameter gradients too
    int   workers = 0;      // 0: a plain Transformer; else a ParallelTransformer with this many
};

// One training step on `engine`: the fused head, or forward then backward.
template <class Engine>
Result step(Engine & engine, const Batch & batch, const LoraAdapter * adapter, const Setup & s, bool fused) {
    const std::vector<float> dlogp = weighted_dlogp(batch);
    Result                   r;
    r.lora.assign(adapter ? adapter->params().size() : 0, 0.0f);
    r.full.assign(s.full ? engine.model().size() : 0, 0.0f);
    GradBuffers grads{adapter ? r.lora.data() : nullptr, s.full ? r.full.data() : nullptr};
    engine.set_training(s.dropout > 0, 42, 7);
    if (fused) {
        r.logp = engine.forward_backward(batch, adapter, dlogp.data(), grads);
    } else {
        r.logp = engine.forward(batch, adapter);
        // Neither the training state nor the recompute switch may reach the pending backward.
        engine.set_training(true, 1234, 99);
        engine.set_recompute(!engine.recompute());
        engine.backward(batch, adapter, dlogp.data(), grads);
    }
    return r;
}

Result run(const std::shared_ptr<Model> & model, const Batch & batch, const Setup & s, bool recompute, bool fused) {
    auto        backend = make_backend(2);
    LoraAdapter adapter = random_adapter(model->config(), s.dropout);
    const LoraAdapter * a = s.lora ? &adapter : nullptr;
    if (s.workers > 0) {
        ParallelTransformer engine(*backend, model, s.workers);
        engine.set_recompute(recompute);
        return step(engine, batch, a, s, fused);
    }
    Transformer engine(*backend, model);
    engine.set_recompute(recompute);
    return step(engine, batch, a, s, fused);
}

// Recomputation on and off give the same bits, through both head paths.
void expect_identical(const ModelConfig & config, const Batch & batch, const Setup & s) {
    auto model = random_model(config);
    for (int fused = 0; fused < 2; fused++) {
        SCOPED_TRACE(fused ? "forward_backward" : "forward, then backward");
        Result kept = run(model, batch, s, false, fused);
        Result redo = run(model, batch, s, true, fused);
        EXPECT_TRUE(same_bits(kept.logp, redo.logp));
        EXPECT_TRUE(same_bits(kept.lora, redo.lora));
        EXPECT_TRUE(same_bits(kept.full, redo.full));
        // Something was computed at all.
        EXPECT_TRUE(any_nonzero(kept.logp));
        EXPECT_EQ(s.lora, any_nonzero(kept.lora));
        EXPECT_EQ(s.full, any_nonzero(kept.full));
    }
}

TEST(Recompute, LoraPaddedBatch) {
    ModelConfig c = three_layers();
    expect_identical(c, padded_batch(c.vocab_size), {});
}

TEST(Recompute, LoraDropoutInTraining) {
    ModelConfig c = three_layers();
    expect_identical(c, padded_batch(c.vocab_size), {.dropout = 0.25f});
}

TEST(Recompute, PackedBatchWithDropout) {
    ModelConfig c = three_layers();
    expect_identical(c, packed_batch(c.vocab_size), {.dropout = 0.1f});
}

TEST(Recompute, Qwen2BiasesTiedEmbeddingsFullGradients) {
    ModelConfig c = qwen2_like();
    expect_identical(c, padded_batch(c.vocab_size), {.dropout = 0.25f, .full = true});
}

TEST(Recompute, SlidingWindowMlpBiasFullGradientsWithoutLora) {
    ModelConfig c = mistral_like();
    expect_identical(c, padded_batch(c.vocab_size), {.lora = false, .full = true});
}

TEST(Recompute, ParallelTwoWorkers) {
    ModelConfig c = qwen2_like();
    expect_identical(c, packed_batch(c.vocab_size), {.dropout = 0.25f, .full = true, .workers = 2});
    expect_identical(c, padded_batch(c.vocab_size), {.workers = 2});
}

// One row over two workers: the parallel engine falls back to one multithreaded Transformer.
TEST(Recompute, ParallelSingleRow) {
    ModelConfig c = three_layers();
    Random      rng(23);
    Batch       one = batch_from_rows({random_ids(rng, 19, c.vocab_size)}, nullptr, 0, false, c.vocab_size);
    expect_identical(c, one, {.dropout = 0.25f, .workers = 2});
}

// The saved activations shrink from L layers' worth to L x [N, C] plus one layer's; switching the
// option back and forth on one engine gives back both figures and the same results.
TEST(Recompute, ActivationBytesAndSwitching) {
    ModelConfig c = three_layers();
    c.num_layers  = 6;
    auto        model   = random_model(c);
    auto        backend = make_backend(2);
    LoraAdapter adapter = random_adapter(c, 0.25f);
    Batch       batch   = padded_batch(c.vocab_size);
    std::vector<float> dlogp = weighted_dlogp(batch);
    Transformer t(*backend, model);
    t.set_training(true, 3, 1);
    std::vector<size_t>             bytes;
    std::vector<std::vector<float>> grads;
    for (bool recompute : {false, true, false, true}) {
        t.set_recompute(recompute);
        std::vector<float> g(adapter.params().size(), 0.0f);
        t.forward_backward(batch, &adapter, dlogp.data(), {g.data(), nullptr});
        bytes.push_back(t.activation_bytes());
        grads.push_back(g);
    }
    const size_t layer_input = (size_t) batch.tokens() * c.hidden_size * sizeof(float);
    EXPECT_LT(bytes[1] * 3, bytes[0]);
    EXPECT_GT(bytes[1], c.num_layers * layer_input);
    EXPECT_EQ(bytes[0], bytes[2]);
    EXPECT_EQ(bytes[1], bytes[3]);
    for (size_t i = 1; i < grads.size(); i++) {
        EXPECT_TRUE(same_bits(grads[0], grads[i])) << i;
    }
}

}  // namespace
