// One training run of a LoRA adapter over a shared, read-only base model: SFT (with the PAFT L1
// penalty), DPO and its variants, or ORPO.
//
// Data flow of one optimizer step:
//   step -> its examples (the epoch's seeded shuffle) -> micro-batches of
//   per_device_train_batch_size -> forward (logp [B*T]) -> objective (loss, dlogp) -> backward
//   (adapter gradients, accumulated) -> L1 penalty -> clip by global norm -> optimizer at the
//   schedule's rate.
//
// Everything a step does is a function of (seed, step), the adapter and the optimizer state, so a
// checkpoint holding the last two resumes to bit-identical results. The files of a run, in the
// output folder:
//   paft_recipe.yaml                     the resolved configuration
//   metrics.jsonl                        one JSON object per log (and eval) step, TRL's names
//   reference_logps.json                 preference losses with a reference: its log-probs, once
//   checkpoint-<step>/                   adapter, optimizer.safetensors, trainer_state.json
//   adapter_config.json, adapter_model.safetensors   the final adapter (PEFT's format)
#pragma once

#include "core/backend.h"
#include "data/dataset.h"
#include "data/packing.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"
#include "train/options.h"
#include "train/step_loop.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paft {

// A run's tokenized examples.
struct TrainData {
    std::vector<SftExample>        sft, eval_sft;
    std::vector<PreferenceExample> pref, eval_pref;
    int                            pad_id = 0;
};

// Reads options.train_data (and eval_data) for options.method: pre-tokenized records need no
// tokenizer; text goes through the tokenizer (options.tokenizer, else the model's folder) and the
// chat template. Skipped examples and warnings are reported on stderr.
TrainData load_train_data(const TrainOptions & options, const ModelConfig & model);

// The step loop's figures for this process (steps, tokens, seconds, last_loss), and:
struct TrainSummary : StepLoopResult {
    long global_step = 0;  // the run's last step
    bool resumed     = false;
};

class Trainer : private StepTrainer {
public:
    // `backend` decides the thread count; `workers` as ParallelTransformer's (0 = one per thread).
    // `ranks`: the ranks of an MPI job running this same training, each taking its share of every
    // micro-batch's rows (null: this process alone); rank 0 alone writes files.
    Trainer(Backend & backend, std::shared_ptr<const Model> model, TrainOptions options, TrainData data,
            int workers = 0, Communicator * ranks = nullptr);

    // Trains to the end (resuming from the last checkpoint when options.resume), writing the
    // files above. RuntimeFailure on a NaN/Inf loss or gradient (the last checkpoint stays).
    TrainSummary run();

    const LoraAdapter & adapter() const { return adapter_; }
    // Prefix for progress and log lines ("sft", "dpo", ...); default the method's name.
    void set_label(std::string label) { label_ = std::move(label); }
    // Plain progress lines even on a terminal (for runs side by side).
    void set_plain_progress(bool plain) { plain_progress_ = plain; }

private:
    using StepResult = StepMetrics;
    struct PreferenceStepData {
        std::vector<PreferenceBatch>     batches;
        std::vector<std::vector<double>> refs;  // per micro-batch: reference logps [2n]
        long                             nll_tokens = 0;
    };
    PreferenceStepData preference_batches(const std::vector<size_t> & units, int micro, bool eval) const;

    void   start_or_resume();
    void   compute_reference();
    long   units() const;  // training rows: examples, or packed rows
    std::vector<size_t> step_units(long step);
    StepResult          sft_step(const std::vector<size_t> & units, long step);
    StepResult          preference_step(const std::vector<size_t> & units, long step);
    void                log_line(const std::string & json_line);

    // The step loop's parts (train/step_loop.h).
    float *     grads() override { return adapter_.grads().data(); }
    size_t      grad_count() override { return adapter_.grads().size(); }
    StepMetrics compute_gradients(long step) override;
    void        penalize(StepMetrics & metrics) override;
    void        update(double lr) override;
    void        add_log_fields(nlohmann::ordered_json & line) override;
    void        evaluate(long step) override;
    void        save_checkpoint(long step) override;
    std::vector<const PreferenceExample *> pairs_of(const std::vector<size_t> & units, bool eval) const;

    Backend &                    backend_;
    std::shared_ptr<const Model> model_;
    TrainOptions                 options_;
    TrainData                    data_;
    std::string                  label_;
    bool                         plain_progress_ = false;
    bool                         writes_         = true;  // rank 0 (or alone): writes the run's files
    ParallelTransformer          transformer_;
    LoraAdapter                  adapter_;
    std::unique_ptr<Optimizer>   optimizer_;
    Schedule                     schedule_;
    std::vector<PackedRow>        packed_;  // SFT with packing: the rows trained on
    long                         steps_per_epoch_ = 1, total_steps_ = 0, start_step_ = 0;
    long                         order_epoch_ = -1;
    std::vector<size_t>          order_;  // the current epoch's shuffled units
    // Reference log-probs (summed over completion tokens) per pair: train and eval.
    std::vector<double>          ref_chosen_, ref_rejected_, eval_ref_chosen_, eval_ref_rejected_;
    StepLoopState                loop_;  // metric window and num_tokens, kept in checkpoints
    std::string                  fingerprint_;     // of the data and configuration, checked on resume
    RunOutputGuard *             guard_ = nullptr;  // while run() writes: told of each checkpoint
};

}  // namespace paft
