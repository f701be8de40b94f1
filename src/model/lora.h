// LoRA adapters, as PEFT defines them: for a targeted linear layer W [out, in],
// y = W x + s * B (A dropout(x)), A [r, in], B [out, r], s = alpha / r (alpha / sqrt(r) with
// rslora). An adapter is an object of its own over a shared, read-only base model, so several
// can exist on one base at once. Its parameters and gradients live in two flat buffers.
#pragma once

#include "core/backend.h"
#include "model/config.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace paft {

// The seven linear layers of a decoder layer that LoRA can target, in PEFT's module names.
enum LoraTarget { TARGET_Q, TARGET_K, TARGET_V, TARGET_O, TARGET_GATE, TARGET_UP, TARGET_DOWN, TARGET_COUNT };

const char * lora_target_name(int target);  // "q_proj", ..., "down_proj"
int          lora_target_from_name(const std::string & name);  // -1 if unknown
// The module path of a target in layer l, as PEFT and Hugging Face name it:
// "model.layers.3.self_attn.q_proj" (its weight: + ".weight").
std::string  lora_module_path(int layer, int target);

struct LoraConfig {
    int                           r       = 8;
    float                         alpha   = 8.0f;
    float                         dropout = 0.0f;
    bool                          rslora  = false;
    std::array<bool, TARGET_COUNT> targets{};
    float                         scale() const;
};

// Parses a comma-separated list of module names ("q_proj,v_proj" or "all-linear").
std::array<bool, TARGET_COUNT> parse_lora_targets(const std::string & list);

// The settings of a PEFT adapter_config.json (`text`; `config_path` names it in errors) for a base
// of `num_layers` layers. InputError naming the file and field for anything paft cannot apply.
LoraConfig parse_adapter_config(const std::string & text, const std::string & config_path, int num_layers);

class LoraAdapter {
public:
    LoraAdapter(const ModelConfig & model, const LoraConfig & config);  // A = B = 0

    // PEFT's default initialisation: A ~ Kaiming-uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
    // B = 0 (so the adapted model starts equal to the base). Our generator, not torch's.
    void init_peft(uint64_t seed);

    // Reads adapter_config.json and adapter_model.safetensors of a PEFT directory; `model` is the
    // base it applies to (shapes are checked against it).
    static LoraAdapter load(const std::string & dir, const ModelConfig & model);
    // Writes adapter_config.json and adapter_model.safetensors (f32) atomically.
    void save(const std::string & dir, const std::string & base_model_path) const;

    const LoraConfig & config() const { return config_; }
    int                layers() const { return layers_; }
    bool               has(int layer, int target) const { return offset_a_[layer][target] != SIZE_MAX; }
    int                in_features(int target) const { return in_[target]; }
    int                out_features(int target) const { return out_[target]; }
    float *            A(int layer, int target) { return params_.data() + offset_a_[layer][target]; }
    float *            B(int layer, int target) { return params_.data() + offset_b_[layer][target]; }
    const float *      A(int layer, int target) const { return params_.data() + offset_a_[layer][target]; }
    const float *      B(int layer, int target) const { return params_.data() + offset_b_[layer][target]; }
    float *            dA(int layer, int target) { return grads_.data() + offset_a_[layer][target]; }
    float *            dB(int layer, int target) { return grads_.data() + offset_b_[layer][target]; }
    // Offsets (in floats) of A and B in params() and in any gradient buffer of the same layout.
    size_t             offset_A(int layer, int target) const { return offset_a_[layer][target]; }
    size_t             offset_B(int layer, int target) const { return offset_b_[layer][target]; }
    // PEFT's key for a tensor: base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight
    std::string        peft_key(int layer, int target, char which) const;

    std::vector<float> &       params() { return params_; }
    const std::vector<float> & params() const { return params_; }
    std::vector<float> &       grads() { return grads_; }
    void                       zero_grads();

private:
    LoraConfig                                     config_;
    int                                            layers_;
    std::array<int, TARGET_COUNT>                  in_{}, out_{};
    std::vector<std::array<size_t, TARGET_COUNT>> offset_a_, offset_b_;
    std::vector<float>                             params_, grads_;
};

// W [out, in] = beta * W + weight * s * B * A for module (layer, target) of `adapter` (one f32
// product; the module's delta itself with beta = 0).
void add_lora_delta(const LoraAdapter & adapter, int layer, int target, float weight, float beta, float * W);
// The same for rows [row0, row0 + rows) of W only (W_rows points at row row0), so a module can
// be merged a block of rows at a time (paft export streams large tensors this way).
void add_lora_delta_rows(const LoraAdapter & adapter, int layer, int target, float weight, float beta, int64_t row0,
                         int64_t rows, float * W_rows);

// Inference with an unfused adapter: y[M, out] (row stride ldy) += s (x Aᵀ) Bᵀ for module
// (layer, target), x [M, in] (row stride ldx); h is scratch, resized to [M, r].
void apply_lora(Backend & backend, const LoraAdapter & adapter, int layer, int target, const float * x, int ldx, int M,
                float * y, int ldy, std::vector<float> & h);

class Model;
// base += weight * s * B * A for every module the adapter targets (PEFT's merge_and_unload), each
// matrix stored back in its own type (Model::edit_matrix: bf16 rounded, quantized ones
// quantized again, as PEFT does on a bitsandbytes base).
void fold_lora_adapter(Model & base, const LoraAdapter & adapter, double weight = 1.0);

}  // namespace paft
