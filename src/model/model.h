// A decoder-only model's parameters (Llama / Mistral / Qwen2), held as f32 in one contiguous
// buffer, llm.c style. The same layout serves full-parameter gradients and optimizer state.
//
// Per layer the q, k, v projection weights are adjacent, so they form one [Hq*D + 2*Hkv*D, C]
// matrix multiplied in one product; likewise gate and up form one [2F, C] matrix.
#pragma once

#include "io/safetensors.h"
#include "model/config.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paft {

// Pointers to one layer's tensors inside a parameter-shaped buffer. Absent biases are null.
struct LayerParams {
    float * ln1;    // [C]          input_layernorm
    float * wqkv;   // [S, C]       q_proj, k_proj, v_proj stacked (S = Hq*D + 2*Hkv*D)
    float * bqkv;   // [S]
    float * wo;     // [C, Hq*D]    o_proj
    float * bo;     // [C]
    float * ln2;    // [C]          post_attention_layernorm
    float * wgu;    // [2F, C]      gate_proj, up_proj stacked
    float * bgu;    // [2F]
    float * wdown;  // [C, F]       down_proj
    float * bdown;  // [C]
};

struct ParamView {
    float *                  embed;    // [V, C]  model.embed_tokens.weight
    float *                  norm;     // [C]     model.norm.weight
    float *                  lm_head;  // [V, C]  lm_head.weight (== embed when tied)
    std::vector<LayerParams> layers;
};

// One named tensor of the layout: its Hugging Face name, shape and offset (in floats).
struct ParamEntry {
    std::string          name;
    std::vector<int64_t> shape;
    size_t               offset;
    size_t               numel() const;
};

class ParamLayout {
public:
    explicit ParamLayout(const ModelConfig & config);
    size_t                          size() const { return size_; }  // floats
    const std::vector<ParamEntry> & entries() const { return entries_; }
    ParamView                       view(float * base) const;

private:
    std::vector<ParamEntry> entries_;
    size_t                  size_ = 0;
    size_t                  add(const std::string & name, std::vector<int64_t> shape);
    // offsets of each layer's tensors, or SIZE_MAX when absent
    struct LayerOffsets {
        size_t ln1, wq, bq, wo, bo, ln2, wg, bg, wdown, bdown;
    };
    std::vector<LayerOffsets> layer_offsets_;
    size_t                    embed_ = 0, norm_ = 0, lm_head_ = 0;
};

class Model {
public:
    // Reads config.json and the safetensors weights of a Hugging Face model directory, upcast to
    // f32. Every expected tensor must be present with its exact shape; an unexpected tensor is an
    // error too (it means a feature this implementation would silently ignore).
    static std::shared_ptr<Model> load(const std::string & dir);
    // A model initialised as Hugging Face does: normal(0, 0.02) weights, unit norms, zero biases.
    static std::shared_ptr<Model> random(const ModelConfig & config, uint64_t seed);

    // Writes config.json and model.safetensors (sharded past max_shard_bytes) atomically.
    void save(const std::string & dir, DType dtype, uint64_t max_shard_bytes = 5ull << 30) const;

    const ModelConfig &   config() const { return config_; }
    const ParamLayout &   layout() const { return layout_; }
    const ParamView &     params() const { return view_; }
    float *               data() { return data_.data(); }
    const float *         data() const { return data_.data(); }
    size_t                size() const { return data_.size(); }  // parameters
    // Rotary inverse frequencies [D/2], computed as Hugging Face does (in f32, llama3 scaling).
    const std::vector<float> & inv_freq() const { return inv_freq_; }

    // Allocates zeroed parameters; RuntimeFailure when they cannot fit in this machine's memory.
    explicit Model(const ModelConfig & config);
    Model(const Model &)             = delete;  // view_ points into data_
    Model & operator=(const Model &) = delete;

private:
    ModelConfig        config_;
    ParamLayout        layout_;
    std::vector<float> data_;
    ParamView          view_;
    std::vector<float> inv_freq_;
};

// InputError naming the folder and the tensor unless `store` holds exactly the tensors of a model
// with this configuration, each with its shape (an unexpected tensor means a feature this
// implementation would silently ignore). Model::load and paft export check through this.
void check_model_tensors(const std::string & dir, const ModelConfig & config, const TensorStore & store);

std::vector<float> rope_inv_freq(const ModelConfig & config);

// cos and sin [N, D/2] of positions[n] * inv_freq[i], in f32 as Hugging Face computes them (the
// Transformer and the Decoder both take their RoPE tables from here). The vectors are resized.
void rope_tables(const std::vector<float> & inv_freq, const int32_t * positions, size_t N, std::vector<float> & cos,
                 std::vector<float> & sin);

}  // namespace paft
