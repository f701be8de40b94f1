// Sparsity of fine-tuning deltas, the PAFT paper's Figure 2: the share of a delta's entries with
// |delta| < threshold (1e-5 in the paper), per layer and module.
//
//   adapter (PEFT folder)   delta = s * B * A [out, in] per lora_A / lora_B pair,
//                           s = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora)
//   model (HF folder)       delta = W - W_base per tensor, against a base with the same tensors
//
// Tensors are grouped by layer (the number after "layers.") and module: the name's last part
// before ".weight" ("q_proj", "input_layernorm", "embed_tokens", "lm_head"), with any other final
// part kept ("q_proj.bias"). Counts are integers, so they do not depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace paft {

enum class DeltaKind { adapter, model };

const char * delta_kind_name(DeltaKind kind);  // "adapter", "model"

// One group of tensors: a module of one layer (layer -1: outside the decoder layers).
struct SparsityCount {
    int         layer = -1;
    std::string module;
    int64_t     near_zero = 0;  // entries with |delta| < threshold
    int64_t     total     = 0;  // entries
};

struct SparsityReport {
    std::string                path;
    DeltaKind                  kind = DeltaKind::adapter;
    std::vector<SparsityCount> counts;  // by layer (-1 last), then in module order
};

// A share of near-zero entries; empty (total 0) where an input has no such tensor.
struct SparsityShare {
    int64_t near_zero = 0;
    int64_t total     = 0;
    double  share() const { return total > 0 ? (double) near_zero / (double) total : 0.0; }
};

// Called after each module (adapter) or tensor (model) with the number done so far and the total.
using SparsityProgress = std::function<void(long done, long total)>;

// Which kind of folder `path` is: adapter_config.json -> adapter, model.safetensors or its
// index -> model. InputError naming the path otherwise.
DeltaKind classify_delta_source(const std::string & path);

// Sparsity of a PEFT LoRA adapter's deltas; no base model needed. Modules run in parallel
// (OpenMP), each formed tile by tile, so memory stays bounded by the threads' tiles.
SparsityReport adapter_sparsity(const std::string & dir, double threshold, const SparsityProgress & progress = {});

// Sparsity of W - W_base for every tensor of a model folder against a base folder (same tensor
// names and shapes). Tensor by tensor, each split over the threads: memory is two f32 copies of
// the largest tensor.
SparsityReport model_sparsity(const std::string & dir, const std::string & base_dir, double threshold,
                              const SparsityProgress & progress = {});

// Either of the two, by classify_delta_source; `base_dir` is needed (and only used) for models.
SparsityReport measure_sparsity(const std::string & path, const std::string & base_dir, double threshold,
                                const SparsityProgress & progress = {});

// The modules of several reports, in display order: q, k, v, o, gate, up, down (each followed
// by its other parts, e.g. "q_proj.bias"), then other modules of the layers, then tensors outside
// the layers, each by name.
std::vector<std::string> sparsity_modules(const std::vector<SparsityReport> & reports);
// The layers present in a report, ascending (-1 excluded).
std::vector<int>         sparsity_layers(const SparsityReport & report);

SparsityShare module_share(const SparsityReport & report, const std::string & module);  // over every layer
SparsityShare layer_share(const SparsityReport & report, int layer);                    // every module of it
SparsityShare cell_share(const SparsityReport & report, int layer, const std::string & module);
SparsityShare overall_share(const SparsityReport & report);                             // entry-weighted

}  // namespace paft
