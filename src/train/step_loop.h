// The optimizer-step loop every trainer runs: the LoRA Trainer (SFT, DPO, ORPO) and the
// Pretrainer (full parameters) supply the parts that differ (StepTrainer); the sequence is here,
// once:
//   for each step from the start (0, or the resumed checkpoint's) to the end:
//     zero the gradients -> the trainer's micro-batches, forward and backward, into them
//     -> the trainer's penalty on the gradients (SFT's L1 on the adapter's delta)
//     -> clip by global norm -> stop on a NaN/Inf loss or norm (RuntimeFailure naming the last
//        good checkpoint) -> the trainer's update at the schedule's rate (optimizer, decay)
//     -> the metric window; at logging steps and the last, one metrics.jsonl line (TRL's names:
//        the window's means, grad_norm and learning_rate of the step, num_tokens)
//     -> evaluation at eval_steps; a checkpoint at save_steps (not the last: the trainer writes
//        its final files itself); the progress line.
#pragma once

#include "train/schedule.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace paft {

// What one step's micro-batches give besides the gradients: metrics summed into the window
// (TRL's names; "loss" is required) and the real tokens through the model.
struct StepMetrics {
    std::map<std::string, double> values;
    long                          tokens = 0;
};

// What a trainer supplies to the loop.
class StepTrainer {
public:
    virtual ~StepTrainer() = default;

    // The gradient buffer the loop zeroes, clips and hands to the update.
    virtual float * grads()            = 0;
    virtual size_t  grad_count()      = 0;
    // Forward and backward of step `step`'s micro-batches, adding into grads().
    virtual StepMetrics compute_gradients(long step) = 0;
    // A penalty added to the gradients and the metrics after the micro-batches (default none).
    virtual void penalize(StepMetrics & metrics) {}
    // The parameters' update at rate lr, from the clipped gradients.
    virtual void update(double lr) = 0;
    // Fields of its own for a log line, after the update (default none).
    virtual void add_log_fields(nlohmann::ordered_json & line) {}
    virtual void evaluate(long step) {}
    virtual void save_checkpoint(long step) = 0;
};

struct StepLoopConfig {
    std::string label;       // progress and error messages ("sft", "pretrain", ...)
    std::string output_dir;  // metrics.jsonl and the checkpoints live there
    Schedule    schedule;
    long        total_steps     = 1;
    long        steps_per_epoch = 1;
    long        logging_steps   = 0;  // 0: a line at the last step only
    long        eval_steps      = 0;  // 0: never (the trainer may evaluate at the end itself)
    long        save_steps      = 0;  // 0: no checkpoint inside the loop
    double      max_grad_norm   = 0;  // 0: no clipping
    bool        plain_progress  = false;
    bool        writes          = true;  // appends to metrics.jsonl (false: another rank does)
};

// What a checkpoint keeps of the loop, so that a resumed run logs as an uninterrupted one.
struct StepLoopState {
    std::map<std::string, double> window_sums;  // metric sums since the last log line
    long                          window_steps = 0;
    long                          num_tokens   = 0;  // TRL's num_tokens: real tokens so far
};

struct StepLoopResult {
    long   steps     = 0;  // taken in this process
    long   tokens    = 0;  // real tokens through the model in this process
    double seconds   = 0;  // wall time of those steps
    double last_loss = 0;
};

// Runs steps [start_step, config.total_steps), appending to OUTPUT_DIR/metrics.jsonl.
StepLoopResult run_step_loop(StepTrainer & trainer, const StepLoopConfig & config, long start_step,
                             StepLoopState & state);

}  // namespace paft

namespace paft {

// What a training run's output folder holds when the run fails (an error, a NaN stop, a full
// disk): its last complete checkpoint and the metrics logged up to it, as --resume will continue
// from them; with no checkpoint, nothing the run wrote (its log, its recipe, and the folder itself
// when the run made it). Made before the folder's lock (so that it acts after the lock is gone),
// told of each checkpoint, committed when the run ends well.
// The size of DIR/metrics.jsonl in bytes (0 when missing).
long metrics_bytes(const std::string & dir);

class RunOutputGuard {
public:
    // `files`: what the run writes before its first checkpoint (metrics.jsonl, its recipe file);
    // those that exist already (a run resumed, or started afresh over one) are left alone.
    RunOutputGuard(std::string dir, std::vector<std::string> files);
    ~RunOutputGuard();
    RunOutputGuard(const RunOutputGuard &)             = delete;
    RunOutputGuard & operator=(const RunOutputGuard &) = delete;

    // A checkpoint is complete (or was resumed from), with metrics.jsonl at `log_bytes` bytes.
    void checkpointed(long log_bytes) { kept_log_bytes_ = log_bytes; }
    void commit() { committed_ = true; }

private:
    std::string              dir_;
    std::vector<std::string> files_;
    bool                     made_dir_       = false;
    bool                     committed_      = false;
    long                     kept_log_bytes_ = -1;  // -1: no checkpoint
};

}  // namespace paft
