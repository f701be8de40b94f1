// The PAFT runs over one base model:
//   parallel    the SFT branch (with the L1 penalty) and the preference branch (DPO, ORPO, ...)
//               train at the same time in one process, on one shared read-only copy of the base
//               weights, each with its own threads, data and hyperparameters; then the two
//               adapters' deltas are merged into the base (TIES by default).
//   sequential  the baseline PAFT is compared with: SFT, its adapter merged into the base, then
//               preference training on that model with it as the reference.
// Outputs, under the run's output folder: sft/ and preference/ (each a training run,
// trainer.h), and model/ (the merged Hugging Face model, with the base's tokenizer files).
#pragma once

#include "train/recipe.h"
#include "train/trainer.h"

namespace paft {

struct PipelineSummary {
    TrainSummary sft, preference;
    std::string  model_dir;  // empty with --no-merge
    double       seconds = 0;
};

PipelineSummary run_parallel(const ParallelOptions & options);
PipelineSummary run_sequential(const ParallelOptions & options);

// Saves a model as a Hugging Face folder (in its config's torch_dtype) with the base's tokenizer
// files and generation_config.json next to it.
void save_model_dir(const Model & model, const std::string & base_dir, const std::string & dir);
// The dtype save_model_dir writes a model with this configuration in: its torch_dtype (bfloat16,
// float16), float32 otherwise.
DType saved_model_dtype(const ModelConfig & config);

// How `threads` (0 = every core) are split: the branches' own counts when set, else half each.
std::pair<int, int> branch_threads(const ParallelOptions & options);

}  // namespace paft
