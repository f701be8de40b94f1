// The Decoder (inference with key/value caches) against the Transformer, whose forward pass is
// verified against PyTorch (test-model-parity): whole sequences, token-by-token decoding, chunked
// prefill, prefix reuse, several sequences per call, adapters folded in; KvCache growth; bad input.
//
// Each family is a tiny random model with weights large enough for attention to be far from
// uniform: Llama, Llama with every bias, Qwen2 (q/k/v biases, tied embeddings), Mistral (a
// sliding window shorter than the sequences, 4 query heads per key/value head). Sequences of 70
// tokens span two of the attention's 64-query blocks.
#include "core/backend.h"
#include "core/error.h"
#include "core/random.h"
#include "model/batch.h"
#include "model/inference.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/transformer.h"

#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace paft;

namespace {

ModelConfig family_config(const std::string & family) {
    ModelConfig c = small_test_config(2);
    if (family == "llama_bias") {
        c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
    } else if (family == "qwen2") {
        c.architecture        = Architecture::Qwen2;
        c.architecture_name   = "Qwen2ForCausalLM";
        c.attention_bias      = true;
        c.tie_word_embeddings = true;
    } else if (family == "mistral") {
        c.architecture      = Architecture::Mistral;
        c.architecture_name = "MistralForCausalLM";
        c.num_kv_heads      = 1;
        c.sliding_window    = 5;
    }
    return c;
}

// Random weights, norms and biases: normal(0, 0.02) plus 0.15 * normal noise on every parameter.
std::shared_ptr<Model> random_model(const ModelConfig & c, uint64_t seed) {
    auto   model = Model::random(c, seed);
    Random rng(seed + 100);
    for (size_t i = 0; i < model->size(); i++) {
        model->data()[i] += 0.15f * rng.normal();
    }
    return model;
}

std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed) {
    Random               rng(seed);
    std::vector<int32_t> ids(n);
    for (int32_t & id : ids) {
        id = (int32_t) (rng.next_u64() % vocab);
    }
    return ids;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t> & b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// The Transformer's logits [T, V] for one sequence (the reference).
std::vector<float> reference_logits(Backend & backend, std::shared_ptr<const Model> model,
                                    const std::vector<int32_t> & tokens, const LoraAdapter * adapter = nullptr) {
    const int          V     = model->config().vocab_size;
    Batch              batch = batch_from_rows({tokens}, nullptr, 0, false, V);
    Transformer        t(backend, std::move(model));
    std::vector<float> logits(tokens.size() * V);
    t.forward(batch, adapter, logits.data());
    return logits;
}

// Rows [from, to) of a [T, V] matrix.
std::vector<float> rows(const std::vector<float> & m, int from, int to, int V) {
    return std::vector<float>(m.begin() + (size_t) from * V, m.begin() + (size_t) to * V);
}

constexpr double kTolerance = 1e-5;

class Inference : public ::testing::TestWithParam<std::string> {
protected:
    std::unique_ptr<Backend> backend = make_backend(2);
    ModelConfig              config  = family_config(GetParam());
    std::shared_ptr<Model>   model   = random_model(config, 7);
    int                      V       = config.vocab_size;
};

// (a) A whole sequence in one call, logits for every token.
TEST_P(Inference, WholeSequence) {
    const std::vector<int32_t> tokens = random_tokens(70, V, 1);
    const std::vector<float>   want   = reference_logits(*backend, model, tokens);
    Decoder                    decoder(*backend, model);
    KvCache                    cache(config, 0);
    SequenceInput              in{nullptr, &cache, tokens, true};
    const float *              got = decoder.forward({&in, 1});
    EXPECT_LE(rel_error(got, want), kTolerance);
    EXPECT_EQ(cache.length(), 70);
    // Only the last token's logits when all_logits is off.
    KvCache       cache2(config, 70);
    SequenceInput last{nullptr, &cache2, tokens, false};
    EXPECT_LE(rel_error(decoder.forward({&last, 1}), rows(want, 69, 70, V)), kTolerance);
}

// (b) One token per call, the cache growing from capacity 0; then chunks of 5, 3, 1, ... tokens.
TEST_P(Inference, TokenByTokenAndChunked) {
    const std::vector<int32_t> tokens = random_tokens(70, V, 2);
    const std::vector<float>   want   = reference_logits(*backend, model, tokens);
    Decoder                    decoder(*backend, model);
    KvCache                    cache(config, 0);
    for (int t = 0; t < 70; t++) {
        SequenceInput in{nullptr, &cache, std::span<const int32_t>(tokens).subspan(t, 1), false};
        ASSERT_LE(rel_error(decoder.forward({&in, 1}), rows(want, t, t + 1, V)), kTolerance) << "token " << t;
    }
    const int chunks[] = {5, 3, 1, 40, 21};  // 70 in all; the 40 cross the 64-query block boundary
    KvCache   chunked(config, 4);
    int       t = 0;
    for (int n : chunks) {
        SequenceInput in{nullptr, &chunked, std::span<const int32_t>(tokens).subspan(t, n), true};
        EXPECT_LE(rel_error(decoder.forward({&in, 1}), rows(want, t, t + n, V)), kTolerance) << "chunk at " << t;
        t += n;
    }
    EXPECT_EQ(chunked.length(), 70);
}

// (c) A context computed once into a prefix cache, continued by three branches with their own
// caches in one call, then each branch one token further; truncate() and re-append.
TEST_P(Inference, PrefixReuseAndTruncate) {
    const std::vector<int32_t>              context  = random_tokens(23, V, 3);
    const std::vector<std::vector<int32_t>> branches = {random_tokens(4, V, 4), random_tokens(1, V, 5),
                                                        random_tokens(9, V, 6)};
    Decoder decoder(*backend, model);
    KvCache prefix(config, 0);
    SequenceInput ctx{nullptr, &prefix, context, false};
    EXPECT_LE(rel_error(decoder.forward({&ctx, 1}), rows(reference_logits(*backend, model, context), 22, 23, V)),
              kTolerance);

    std::vector<KvCache>       caches(3, KvCache(config, 2));
    std::vector<SequenceInput> inputs;
    for (int b = 0; b < 3; b++) {
        inputs.push_back({&prefix, &caches[b], branches[b], true});
    }
    const float * got = decoder.forward(inputs);
    size_t        row = 0;
    for (int b = 0; b < 3; b++) {
        const int          n    = (int) branches[b].size();
        std::vector<float> want = reference_logits(*backend, model, concat(context, branches[b]));
        EXPECT_LE(rel_error(got + row * V, rows(want, 23, 23 + n, V)), kTolerance) << "branch " << b;
        row += n;
    }
    // One more token for each branch, together (a batched decoding step after a shared prefix).
    const std::vector<int32_t> next = random_tokens(3, V, 7);
    for (int b = 0; b < 3; b++) {
        inputs[b].tokens     = std::span<const int32_t>(next).subspan(b, 1);
        inputs[b].all_logits = false;
    }
    got = decoder.forward(inputs);
    for (int b = 0; b < 3; b++) {
        std::vector<int32_t> full = concat(concat(context, branches[b]), {next[b]});
        std::vector<float>   want = reference_logits(*backend, model, full);
        EXPECT_LE(rel_error(got + (size_t) b * V, rows(want, (int) full.size() - 1, (int) full.size(), V)), kTolerance)
            << "branch " << b;
    }
    // Branch 2 cut back to its first 3 tokens, then continued with other tokens.
    caches[2].truncate(3);
    EXPECT_EQ(caches[2].length(), 3);
    const std::vector<int32_t> other = random_tokens(6, V, 8);
    SequenceInput              again{&prefix, &caches[2], other, true};
    const std::vector<int32_t> kept(branches[2].begin(), branches[2].begin() + 3);
    const std::vector<int32_t> full = concat(concat(context, kept), other);
    EXPECT_LE(rel_error(decoder.forward({&again, 1}), rows(reference_logits(*backend, model, full), 26, 32, V)),
              kTolerance);
}

// (d) Sequences of different lengths and states in one call: a fresh prefill with all logits, a
// one-token step of a sequence with a cache, a fresh prefill with the last logits only.
TEST_P(Inference, SeveralSequencesInOneCall) {
    const std::vector<int32_t> a = random_tokens(17, V, 9), b = random_tokens(30, V, 10), c = random_tokens(66, V, 11);
    Decoder                    decoder(*backend, model);
    KvCache                    ca(config, 0), cb(config, 0), cc(config, 0);
    SequenceInput              b_start{nullptr, &cb, std::span<const int32_t>(b).first(29), false};
    decoder.forward({&b_start, 1});
    const SequenceInput inputs[] = {{nullptr, &ca, a, true},
                                    {nullptr, &cb, std::span<const int32_t>(b).subspan(29), false},
                                    {nullptr, &cc, c, false}};
    const float * got = decoder.forward(inputs);
    EXPECT_LE(rel_error(got, reference_logits(*backend, model, a)), kTolerance);
    EXPECT_LE(rel_error(got + (size_t) 17 * V, rows(reference_logits(*backend, model, b), 29, 30, V)), kTolerance);
    EXPECT_LE(rel_error(got + (size_t) 18 * V, rows(reference_logits(*backend, model, c), 65, 66, V)), kTolerance);
    EXPECT_EQ(ca.length(), 17);
    EXPECT_EQ(cb.length(), 30);
    EXPECT_EQ(cc.length(), 66);
}

// The same calls give bit-identical logits.
TEST_P(Inference, Deterministic) {
    const std::vector<int32_t> a = random_tokens(40, V, 12), b = random_tokens(7, V, 13);
    std::vector<float>         first;
    for (int run = 0; run < 2; run++) {
        Decoder             decoder(*backend, model);
        KvCache             ca(config, 0), cb(config, 0);
        const SequenceInput inputs[] = {{nullptr, &ca, a, true}, {nullptr, &cb, b, true}};
        const float *       got      = decoder.forward(inputs);
        std::vector<float>  logits(got, got + (size_t) 47 * V);
        if (run == 0) {
            first = logits;
        } else {
            EXPECT_EQ(first, logits);
        }
    }
}

// A random adapter (A and B nonzero) on `targets`.
LoraAdapter random_adapter(const ModelConfig & c, const std::string & targets, int r, float alpha, bool rslora,
                           uint64_t seed) {
    LoraAdapter adapter(c, test_lora_config(targets, r, alpha, rslora));
    Random      rng(seed);
    for (float & p : adapter.params()) {
        p = 0.2f * rng.normal();
    }
    return adapter;
}

// base + sum over adapters of s * B A, by plain loops over the Hugging Face tensor names.
std::shared_ptr<Model> fold_by_hand(const Model & base, const std::vector<const LoraAdapter *> & adapters) {
    auto model = std::make_shared<Model>(base.config());
    std::copy(base.data(), base.data() + base.size(), model->data());
    for (const LoraAdapter * a : adapters) {
        const int r = a->config().r;
        for (int l = 0; l < a->layers(); l++) {
            for (int t = 0; t < TARGET_COUNT; t++) {
                if (!a->has(l, t)) {
                    continue;
                }
                const std::string name = lora_module_path(l, t) + ".weight";
                auto              e    = std::find_if(base.layout().entries().begin(), base.layout().entries().end(),
                                                      [&](const ParamEntry & p) { return p.name == name; });
                const int out = a->out_features(t), in = a->in_features(t);
                if (e == base.layout().entries().end() || e->shape != std::vector<int64_t>{out, in}) {
                    ADD_FAILURE() << name << ": no such weight of shape [" << out << ", " << in << "]";
                    continue;
                }
                float * W = model->data() + e->offset;
                for (int o = 0; o < out; o++) {
                    for (int i = 0; i < in; i++) {
                        double sum = 0;
                        for (int k = 0; k < r; k++) {
                            sum += (double) a->B(l, t)[o * r + k] * a->A(l, t)[k * in + i];
                        }
                        W[o * in + i] += (float) (a->config().scale() * sum);
                    }
                }
            }
        }
    }
    return model;
}

// (e) Adapters folded in by load_model_with_adapters: one on all seven projections against the
// Transformer running it unmerged; two against a model folded by hand.
TEST_P(Inference, AdaptersFoldedIn) {
    const std::filesystem::path dir = fresh_test_folder("inference");
    model->save((dir / "model").string(), DType::F32);
    const LoraAdapter all = random_adapter(config, "all-linear", 3, 6.0f, false, 21);
    const LoraAdapter qv  = random_adapter(config, "q_proj,v_proj,down_proj", 2, 4.0f, true, 22);
    all.save((dir / "all").string(), (dir / "model").string());
    qv.save((dir / "qv").string(), (dir / "model").string());
    const std::vector<int32_t> tokens = random_tokens(20, V, 14);

    auto          one = load_model_with_adapters((dir / "model").string(), {(dir / "all").string()});
    Decoder       decoder(*backend, one);
    KvCache       cache(config, 0);
    SequenceInput in{nullptr, &cache, tokens, true};
    EXPECT_LE(rel_error(decoder.forward({&in, 1}), reference_logits(*backend, model, tokens, &all)), kTolerance);

    auto    two = load_model_with_adapters((dir / "model").string(), {(dir / "all").string(), (dir / "qv").string()});
    Decoder decoder2(*backend, two);
    KvCache cache2(config, 0);
    in.cache = &cache2;
    auto folded = fold_by_hand(*model, {&all, &qv});
    EXPECT_LE(rel_error(decoder2.forward({&in, 1}), reference_logits(*backend, folded, tokens)), kTolerance);
    // No adapters: the model as saved.
    auto    none = load_model_with_adapters((dir / "model").string(), {});
    Decoder decoder3(*backend, none);
    KvCache cache3(config, 0);
    in.cache = &cache3;
    EXPECT_LE(rel_error(decoder3.forward({&in, 1}), reference_logits(*backend, model, tokens)), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Families, Inference, ::testing::Values("llama", "llama_bias", "qwen2", "mistral"));

// Capacity doubles (or fits the append when more), lengths follow appends and truncations, and
// the rows kept survive a reallocation.
TEST(KvCache, GrowthAndTruncate) {
    const ModelConfig c = small_test_config(2);  // Hkv*D = 16 floats per row
    KvCache           cache(c, 0);
    EXPECT_EQ(cache.append(1), 0);
    EXPECT_EQ(cache.capacity(), 1);
    EXPECT_EQ(cache.append(1), 1);
    EXPECT_EQ(cache.capacity(), 2);
    EXPECT_EQ(cache.append(1), 2);
    EXPECT_EQ(cache.capacity(), 4);
    cache.keys(1)[2 * 16 + 5]   = 3.5f;
    cache.values(0)[1 * 16 + 2] = -2.0f;
    EXPECT_EQ(cache.append(7), 3);
    EXPECT_EQ(cache.capacity(), 10);
    EXPECT_EQ(cache.length(), 10);
    EXPECT_EQ(cache.keys(1)[2 * 16 + 5], 3.5f);
    EXPECT_EQ(cache.values(0)[1 * 16 + 2], -2.0f);
    EXPECT_EQ(cache.bytes(), (size_t) 2 * 2 * 10 * 16 * sizeof(float));  // keys and values, 2 layers
    cache.truncate(4);
    EXPECT_EQ(cache.length(), 4);
    EXPECT_EQ(cache.append(2), 4);
    EXPECT_EQ(cache.capacity(), 10);
    EXPECT_THROW(cache.truncate(7), InputError);
}

// (f) Bad input: an adapter for another shape names the adapter; empty tokens, a missing cache,
// an id outside the vocabulary, a cache used twice are errors, and leave the caches as they were.
TEST(InferenceErrors, BadInput) {
    const ModelConfig           c   = small_test_config(2);
    const std::filesystem::path dir = fresh_test_folder("inference");
    Model::random(c, 1)->save((dir / "model").string(), DType::F32);
    ModelConfig wider      = c;
    wider.intermediate_size = 64;
    LoraAdapter(wider, test_lora_config("all-linear", 2, 2.0f)).save((dir / "wide").string(), "elsewhere");
    expect_input_error([&] { load_model_with_adapters((dir / "model").string(), {(dir / "wide").string()}); },
                       {(dir / "wide").string(), "mlp.gate_proj"});
    expect_input_error([&] { load_model_with_adapters((dir / "model").string(), {(dir / "missing").string()}); },
                       {(dir / "missing").string()});

    auto                       backend = make_backend(2);
    Decoder                    decoder(*backend, Model::random(c, 1));
    KvCache                    cache(c, 0), other(c, 0);
    const std::vector<int32_t> tokens = {1, 2, 3}, empty, bad = {1, 40};
    expect_input_error([&] { decoder.forward({}); }, {"no sequences"});
    SequenceInput no_tokens{nullptr, &cache, empty, false};
    expect_input_error([&] { decoder.forward({&no_tokens, 1}); }, {"sequence 0", "no tokens"});
    const SequenceInput no_cache[] = {{nullptr, &cache, tokens, false}, {nullptr, nullptr, tokens, false}};
    expect_input_error([&] { decoder.forward(no_cache); }, {"sequence 1", "no cache"});
    SequenceInput out_of_range{nullptr, &cache, bad, false};
    expect_input_error([&] { decoder.forward({&out_of_range, 1}); }, {"sequence 0", "token 1", "40"});
    const SequenceInput shared[] = {{nullptr, &cache, tokens, false}, {nullptr, &cache, tokens, false}};
    expect_input_error([&] { decoder.forward(shared); }, {"cache of sequence 0"});
    const SequenceInput prefix_written[] = {{nullptr, &cache, tokens, false}, {&cache, &other, tokens, false}};
    expect_input_error([&] { decoder.forward(prefix_written); }, {"cache of sequence 0"});
    ModelConfig   deeper = c;
    deeper.num_layers    = 3;
    KvCache       deep(deeper, 0);
    SequenceInput wrong_model{nullptr, &deep, tokens, false};
    expect_input_error([&] { decoder.forward({&wrong_model, 1}); }, {"another model"});
    EXPECT_EQ(cache.length(), 0);
    EXPECT_EQ(other.length(), 0);
}

}  // namespace
