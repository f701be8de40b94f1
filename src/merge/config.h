// A merge as mergekit's YAML describes it (models, base_model, merge_method, parameters, dtype,
// out_dtype, tokenizer_source), plus paft's run options. Parameter settings keep their YAML form
// (scalar, gradient over layers, or filter/value list) until the planner evaluates them per tensor.
#pragma once

#include "merge/merge.h"
#include "merge/methods.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paft {

// A parameter as written: a scalar, a gradient (numbers interpolated across layers), or a list
// of {filter, value} conditions (first whose filter is absent, "*" or a substring of the tensor
// name wins; the value may itself be a scalar or a gradient). mergekit's evaluate_setting.
struct ParamSetting {
    enum class Kind { scalar, gradient, conditions };
    Kind                                                  kind = Kind::scalar;
    ParamScalar                                           scalar;
    std::vector<double>                                   gradient;
    std::vector<std::pair<std::string, std::shared_ptr<ParamSetting>>> conditions;  // filter ("" = any)
    std::string                                           where;  // FILE:LINE, for errors
};

// The value for tensor `tensor` at layer position t (layer / (layers - 1); embeddings 0, final
// norm and head 1); nullopt when no condition matches.
std::optional<ParamScalar> evaluate_setting(const ParamSetting & setting, const std::string & tensor, double t);

// A model to merge: a Hugging Face model directory, optionally with a PEFT LoRA adapter applied
// to it (mergekit's "base+adapter" reference).
struct ModelRef {
    std::string model;
    std::string adapter;  // "" = none
    std::string text() const;  // "model" or "model+adapter"
};
ModelRef parse_model_ref(const std::string & text);

struct MergeInputModel {
    ModelRef                            ref;
    std::map<std::string, ParamSetting> parameters;
    std::string                         where;  // FILE:LINE of the entry
};

struct MergeConfig {
    std::string                         method = "ties";
    std::optional<ModelRef>             base;
    std::vector<MergeInputModel>        models;
    std::map<std::string, ParamSetting> parameters;  // global
    std::string                         dtype;             // "" or bfloat16/float16/float32 (mergekit's names or bf16/f16/f32)
    std::string                         out_dtype;         // ""
    std::string                         tokenizer_source;  // "" or "base" or a model directory
    std::string                         source;            // the YAML file, for errors ("" = built in code)
};

// The merge of PEFT adapters over `base` that MergeOptions describe (paft parallel's `merge:`
// section, the same settings as the short form of `paft merge`): each adapter is "base+adapter".
MergeConfig adapter_merge_config(const std::string & base, const std::vector<std::string> & adapters,
                                 const MergeOptions & options);

// Reads mergekit's YAML. Unknown keys, slices/modules, tokenizer unions and malformed values are
// InputErrors naming FILE:LINE.
MergeConfig read_merge_config(const std::string & path);
// The YAML of a config (mergekit's layout), written next to the merged model.
std::string merge_config_yaml(const MergeConfig & config);

// How a merge runs (not part of mergekit's YAML).
enum class OutFormat { hf, lora };
struct MergeRunOptions {
    std::string out;                               // output directory (must not exist unless overwrite)
    int         threads         = 0;               // 0 = all cores
    uint64_t    shard_bytes     = 5000000000ull;   // mergekit's --out-shard-size default (5B)
    uint64_t    seed            = 42;              // DARE / DELLA masks
    uint64_t    memory_limit    = 0;               // bytes of working buffers at once; 0 = automatic
    OutFormat   format          = OutFormat::hf;
    int         rank            = 0;               // lora: rank of the factorised delta
    bool        overwrite       = false;           // replace an existing output directory
    bool        plain_progress  = false;           // plain lines even on a terminal
};

// What a merge did, for the program's summary.
struct LoraEnergy {
    std::string tensor;
    double      retained = 1.0;  // sum of the kept squared singular values / sum of all
};
struct MergeReport {
    size_t                  tensors      = 0;
    size_t                  merged       = 0;  // tensors some model changes
    uint64_t                bytes_out    = 0;
    double                  seconds      = 0;
    std::vector<LoraEnergy> energy;  // lora output: per tensor
};

// The checks of a config that need no files: the method, the number of models, every
// parameter's name and scope, and the values at a nominal tensor. InputError.
void check_merge_parameters(const MergeConfig & config);

// Validates everything (paths, architectures, tensor names and shapes, adapter targets, every
// parameter of every tensor) and then merges, streaming tensors through a pool of workers into
// a temporary directory that is renamed to options.out at the end.
MergeReport run_merge(const MergeConfig & config, const MergeRunOptions & options);

}  // namespace paft
