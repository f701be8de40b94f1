// paft run's memory plan: each stage's expected peak resident memory, worked out before any stage
// runs from the recipe, the base model's config.json and safetensors headers, and this machine.
// `paft run --plan` prints it; `paft run` refuses (RuntimeFailure, exit 1) a recipe with a stage
// that cannot fit, before writing anything.
//
// A stage's peak is the sum of its parts, each counted as the code that runs the stage allocates it:
//   program            the process itself (code, libraries, the recipe): its resident peak when planned
//   weights            planned_weight_bytes (model.h): the model as Model::load keeps it, mapped in
//                      place, converted or quantized; the sequential models and the merged ones in
//                      the dtype save_model_dir and the merge engine write
//   adapter+optimizer  training: the LoRA parameters and their gradients, and AdamW's two moments,
//                      f32: 4 x 4 bytes a parameter (SGD with momentum: 3 x 4)
//   worker gradients   each of a batch's W > 1 workers (ParallelTransformer) sums its rows' LoRA
//                      gradients in a buffer of its own: W x 4 bytes a parameter
//   checkpoint         the optimizer's state, copied while a checkpoint is written
//   activations        Transformer::planned_activation_bytes over the workers' rows of one
//                      micro-batch of B x T tokens (T = max_length; B pairs are 2B sequences):
//                      with gradient_checkpointing L x [N, C] layer inputs plus one layer's
//                      activations, else every layer's (N = B x T)
//   scratch            Transformer::planned_scratch_bytes: the head's logits chunk (at most 64 MB)
//                      and one layer's gradient buffers, per worker
//   data               the training examples' token ids, estimated from the data file's size
//   adapters           LoRA adapters loaded for a merge, an evaluation or an export (values and
//                      gradient buffers: 8 bytes a parameter)
//   merge buffers      the merge engine's workers: each keeps the buffers of the largest tensor it
//                      merged (base, each model's delta, their sparsified copies, the result), or
//                      holds the mapped pages of the tensor it copies unchanged
//   KV cache, decoder scratch, logits
//                      evaluation: f32 keys and values of L layers x kv_dim per position, for the
//                      log-likelihood trunk and its branches or a batch of generations; the
//                      Decoder's per-token buffers for the largest forward pass; logits [rows, V]
//   export buffers     a block of rows as f32 and quantized, and the tensor's mapped pages
// Every part is an estimate of what the code holds at the stage's peak, not a measurement; the
// notes say what each assumes (evaluation contexts) or leaves out (the tasks' documents).
#pragma once

#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "run/run_recipe.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paft {

struct MemoryPart {
    std::string name;   // "weights", "activations", ...
    uint64_t    bytes = 0;
    std::string note;   // what it assumes or leaves out; empty when nothing
};

struct StagePlan {
    std::string             stage;  // as the run records it: "train/sft", "merge/paft-ties", "eval/base", ...
    std::string             loads;  // what the stage holds, and how
    std::vector<MemoryPart> parts;
    uint64_t                peak_bytes() const;  // the parts' sum
};

// What the plan knows of the base model: its configuration and how its matrices are stored.
struct BaseModelFacts {
    std::string                        dir;
    ModelConfig                        config;
    std::shared_ptr<const TensorStore> store;  // the safetensors headers; null: not on disk
    DType                              stored = DType::BF16;  // the matrices' dtype (each one's from `store`)

    // config.json and the safetensors headers of `dir` (mapped and parsed; no weight is read).
    // InputError naming the folder when either is missing.
    static BaseModelFacts read(const std::string & dir);
    // A model that is not on disk: every matrix stored as `stored`.
    static BaseModelFacts from_config(std::string dir, ModelConfig config, DType stored);

    // planned_weight_bytes of the base loaded with `options`.
    size_t weight_bytes(const LoadOptions & options) const;
};

struct MachineFacts {
    uint64_t memory_bytes  = 0;  // physical memory, as Model::load checks it: sysconf pages x page size
    int      threads       = 1;  // the trainers' threads for `threads: 0` (OpenMP's team size)
    int      cores         = 1;  // the merge engine's and export's for `threads: 0` (hardware threads)
    uint64_t program_bytes = 0;  // the process's own resident peak when planned

    static MachineFacts this_machine();
    // What a stage may use: 95% of the memory (the rest for the system), as Model::load allows.
    uint64_t usable_bytes() const;
};

struct RunPlan {
    std::string              recipe;  // its path
    MachineFacts             machine;
    std::vector<StagePlan>   stages;  // in the order the run runs them
    std::vector<std::string> remedies;  // when a stage cannot fit: recipe changes and what they give

    bool fits(const StagePlan & stage) const { return stage.peak_bytes() <= machine.usable_bytes(); }
    bool fits() const;
    // stage | loads | peak memory GB | fits? | largest parts, then the machine and the notes.
    std::string            table() const;
    nlohmann::ordered_json json() const;
    // Which stages cannot fit, by how much, and what would help; empty when every stage fits.
    std::string refusal() const;
};

// The plan of every stage the run would run, from the base's folder, on this machine.
RunPlan plan_run(const RunRecipe & recipe);
// The same from given facts: a base not downloaded yet (its config and dtype), another machine.
RunPlan plan_run(const RunRecipe & recipe, const BaseModelFacts & base, const MachineFacts & machine);
std::vector<StagePlan> plan_stages(const RunRecipe & recipe);

// RuntimeFailure with plan.refusal() when some stage cannot fit.
void check_plan_fits(const RunPlan & plan);

}  // namespace paft
