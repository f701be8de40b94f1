// Inference: forward passes that append tokens to key/value caches, for scoring and generation.
//
// A KvCache holds one sequence's keys (after RoPE) and values for every layer. A sequence may
// also see a read-only prefix cache shared with other sequences: the choices of a multiple-choice
// question all continue one context, which is computed once (prefix reuse).
//
// Decoder::forward runs the new tokens of several sequences in one pass: every projection and the
// MLP are one product over all their tokens (so a batch of generations, one token each, is a
// matrix product rather than a matrix-vector product per sequence); attention is per sequence,
// over its prefix, its cache and its new tokens, causal (Backend::attention_cached). The
// arithmetic is the Transformer's (same kernels for norms, RoPE tables, SwiGLU), so logits agree
// with a whole-sequence forward up to the order of the attention sums. Rows whose logits are not
// asked for stop after the last layer's attention (their keys and values are all that is kept).
//
// Adapters are applied unfused, y = x Wᵀ + s (x Aᵀ) Bᵀ per adapter (model/lora's apply_lora): the
// base stays in its own type and in place, and an adapter of rank r adds 2·r·(in + out) FLOPs a
// token per module, a few percent of the module's own product.
#pragma once

#include "core/backend.h"
#include "model/lora.h"
#include "model/model.h"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace paft {

class KvCache {
public:
    // Room for `capacity` positions; grows on demand (append past capacity reallocates).
    KvCache(const ModelConfig & config, int capacity);

    int    length() const { return length_; }
    int    capacity() const { return capacity_; }
    int    layers() const { return num_layers_; }
    int    row_size() const { return row_; }  // floats per position and layer: Hkv*D
    void   truncate(int length);  // forgets positions >= length (length <= length())
    size_t bytes() const;         // memory held

    // Layer l's keys and values [capacity, Hkv*D], row t = position (prefix length + t).
    float *       keys(int layer);
    float *       values(int layer);
    const float * keys(int layer) const;
    const float * values(int layer) const;

    // Makes room for `n` more positions and returns the row where they start (the old length);
    // the caller fills rows [length, length + n) of every layer and the length becomes length + n.
    int append(int n);

private:
    int                num_layers_, row_ = 0;  // row_ = Hkv*D
    int                length_ = 0, capacity_ = 0;
    std::vector<float> k_, v_;  // [L, capacity, Hkv*D]
    void               reserve(int capacity);
};

// One sequence's part of a forward pass.
struct SequenceInput {
    const KvCache *          prefix = nullptr;  // read-only positions [0, P), P = prefix->length(); may be null
    KvCache *                cache  = nullptr;  // own positions P .. P + cache->length(); the new tokens' keys
                                                // and values are appended here (required)
    std::span<const int32_t> tokens;            // new tokens (at least one), at positions
                                                // P + cache->length() + i
    bool                     all_logits = false;  // logits for every new token, else only for the last
};

// A model and the adapters inference applies on it (in order, weight 1 each).
struct AdaptedModel {
    std::shared_ptr<const Model>                    model;
    std::vector<std::shared_ptr<const LoraAdapter>> adapters;

    AdaptedModel() = default;
    AdaptedModel(std::shared_ptr<const Model> m, std::vector<std::shared_ptr<const LoraAdapter>> a = {})  // NOLINT: a model alone
        : model(std::move(m)), adapters(std::move(a)) {}
    AdaptedModel(std::shared_ptr<Model> m) : model(std::move(m)) {}  // NOLINT: a model alone
};

// Loads DIR (its weights as `options` say) and each adapter directory, checked against the model.
// InputError for a bad model or adapter.
AdaptedModel load_model_with_adapters(const std::string & model_dir, const std::vector<std::string> & adapter_dirs,
                                      const LoadOptions & options = {});

class Decoder {
public:
    Decoder(Backend & backend, AdaptedModel model);

    // Runs the new tokens of `seqs` and returns logits [R, V] (row-major, R = sum over seqs of n or
    // 1 as all_logits says, in the order of seqs), valid until the next call. The caches grow by
    // their sequence's n tokens. Two inputs must not share a cache.
    const float * forward(std::span<const SequenceInput> seqs);

    const Model & model() const { return *model_; }
    int           vocab_size() const { return model_->config().vocab_size; }

private:
    void check_inputs(std::span<const SequenceInput> seqs) const;
    void layer_forward(int l, std::span<const SequenceInput> seqs, int N, int R);
    // y[M, out] = x[M, in] Wᵀ + b + the adapters' terms of the projection's modules
    // (`targets`: (LoRA target, first output column) per stacked module).
    void linear(int layer, const float * x, const std::vector<WeightSegment> & W, const float * b, int M, int in,
                int out, std::initializer_list<std::pair<int, int>> targets, float * y);

    Backend &                                       backend_;
    std::shared_ptr<const Model>                    model_;
    std::vector<std::shared_ptr<const LoraAdapter>> adapters_;
    std::vector<float>                              lora_h_;  // [M, r] scratch
    // scratch, grown to the largest call so far: N = total new tokens, R = rows of logits
    std::vector<float>          x_, h_, rstd_, qkv_, attn_, gu_, act_, cos_, sin_;  // [N, ...]
    std::vector<float>          logits_;                                           // [R, V]
    std::vector<int32_t>        ids_, positions_;                                  // [N]
    std::vector<int32_t>        logit_rows_;  // [R] the rows (of N) whose logits are returned, increasing
    std::vector<CachedSequence> attention_;   // one per input sequence
};

}  // namespace paft
