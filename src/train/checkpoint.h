// Checkpoints of a training run: everything needed to continue it bit for bit.
//   OUT/checkpoint-<step>/adapter_config.json, adapter_model.safetensors   the adapter (PEFT), or
//   OUT/checkpoint-<step>/config.json, model.safetensors                   the model (pre-training)
//   OUT/checkpoint-<step>/optimizer.safetensors   the optimizer's state buffers (F32), step count
//   OUT/checkpoint-<step>/trainer_state.json      step, counters, metric sums, log length
// The folder is written as checkpoint-<step>.tmp and renamed when complete, so a run killed at
// any moment leaves either the whole checkpoint or none of it. The data order and dropout masks
// are functions of (seed, step) and need no state of their own.
#pragma once

#include "model/lora.h"
#include "train/optimizer.h"

#include <functional>
#include <map>
#include <optional>
#include <string>

namespace paft {

struct TrainerState {
    long                          global_step  = 0;  // optimizer steps done
    long                          total_steps  = 0;
    long                          num_tokens   = 0;
    std::string                   fingerprint;       // of the data and configuration
    std::map<std::string, double> window_sums;       // metric sums since the last log
    long                          window_steps = 0;
    long                          log_bytes    = 0;  // length of metrics.jsonl at this step
};

// Writes OUT/checkpoint-<state.global_step>/: `write_weights(folder)` writes the trained weights
// into the folder, then the optimizer's state and `state` are added.
void write_checkpoint(const std::string & out_dir, const TrainerState & state, const Optimizer & optimizer,
                      const std::function<void(const std::string & folder)> & write_weights);
void write_checkpoint(const std::string & out_dir, const TrainerState & state, const LoraAdapter & adapter,
                      const Optimizer & optimizer, const std::string & base_model);

// The step of the newest complete checkpoint in out_dir, if any.
std::optional<long> latest_checkpoint_step(const std::string & out_dir);

// Loads the newest complete checkpoint: `read_weights(folder)` reads the weights, the optimizer's
// state goes into `optimizer`; nullopt when there is none.
std::optional<TrainerState> read_latest_checkpoint(const std::string & out_dir, Optimizer & optimizer,
                                                   const std::function<void(const std::string & folder)> & read_weights);
// The same for a LoRA run: the adapter into `adapter`.
std::optional<TrainerState> read_latest_checkpoint(const std::string & out_dir, const ModelConfig & model,
                                                   LoraAdapter & adapter, Optimizer & optimizer);

// Keeps the first `bytes` bytes of a file (atomically; a missing file becomes empty).
void truncate_file(const std::string & path, long bytes);

}  // namespace paft
