// Training objectives, expressed through the per-position target log-probabilities logp [B*T]
// that Transformer::forward returns: each objective gives its loss and d(loss)/d(logp), which
// Transformer::backward turns into adapter gradients.
//
//   SFT         mean token cross-entropy on the trained tokens (+ the L1 penalty, l1.h)
//   preference  DPO's sigmoid loss and its variants (ipo, hinge, robust), the reference-free
//               simpo, and ORPO, on pairs (prompt, chosen, rejected), as TRL defines them.
//
// Normalisation: one optimizer step may span several micro-batches (gradient accumulation). The
// loss of the step is a mean over the whole step: over its trained tokens (SFT, as transformers
// does with num_items_in_batch) or over its pairs (preferences). Each micro-batch is given that
// step-wide count, so the per-micro-batch losses and gradients add up to the step's.
#pragma once

#include "data/dataset.h"
#include "model/batch.h"

#include <string>
#include <vector>

namespace paft {

// ---- SFT --------------------------------------------------------------------------------------

// A right-padded batch of SFT examples (targets where labels != -100).
Batch sft_batch(const std::vector<const SftExample *> & examples, int pad_id, int vocab_size);

struct SftTerms {
    double nll_sum = 0.0;  // sum over trained tokens of -logp (nats)
    long   tokens  = 0;    // trained tokens in this micro-batch
};

// nll over the micro-batch; dlogp [B*T] = -1/step_tokens at trained positions (so the step's loss
// is sum(nll) / step_tokens).
SftTerms sft_objective(const Batch & batch, const std::vector<float> & logp, long step_tokens,
                       std::vector<float> & dlogp);

// ---- Preferences ------------------------------------------------------------------------------

enum class PreferenceLoss { sigmoid, ipo, hinge, robust, simpo, orpo };

PreferenceLoss preference_loss_from_name(const std::string & name);  // InputError if unknown
const char *   preference_loss_name(PreferenceLoss loss);
// Whether the loss compares against a reference model (all but simpo and orpo).
bool           needs_reference(PreferenceLoss loss);

struct PreferenceConfig {
    PreferenceLoss loss            = PreferenceLoss::sigmoid;
    double         beta            = 0.1;   // DPO's beta; ORPO's lambda
    double         label_smoothing = 0.0;   // robust (and simpo): epsilon in [0, 0.5)
    double         simpo_gamma     = 0.5;   // simpo's target margin
    bool           orpo_prompt_nll = true;  // ORPO's NLL over prompt + chosen (TRL), else the completion only
};

// Rows [chosen_0 .. chosen_{n-1}, rejected_0 .. rejected_{n-1}], each prompt + completion,
// right-padded. Targets lie on completion tokens only, except on the chosen rows' prompt tokens
// too when `prompt_targets` (ORPO's NLL over the prompt).
struct PreferenceBatch {
    Batch            batch;
    int              pairs = 0;
    std::vector<int> prompt_length;  // [2n] tokens of each row's prompt
    std::vector<int> length;         // [2n] real tokens of each row
};

PreferenceBatch preference_batch(const std::vector<const PreferenceExample *> & examples, bool prompt_targets,
                                 int pad_id, int vocab_size);

// Summed log-probability of each row's completion tokens [2n], and their counts [2n].
struct CompletionLogps {
    std::vector<double> sum;
    std::vector<int>    tokens;
};
CompletionLogps completion_logps(const PreferenceBatch & pb, const std::vector<float> & logp);

// Sums of the metrics TRL logs (over the pairs of a micro-batch; divide by the pair count).
// `loss` sums the pairs' losses, so a step's sum over its micro-batches divided by its pairs is the
// step's loss. ORPO's NLL is a token mean over the whole step rather than a per-pair value: each
// micro-batch adds its share nll_sum / step_nll_tokens scaled by step_pairs to nll_loss and loss,
// so the same division gives TRL's values.
struct PreferenceMetrics {
    double loss = 0, reward_chosen = 0, reward_rejected = 0, reward_accuracy = 0, reward_margin = 0;
    double logps_chosen = 0, logps_rejected = 0;  // summed (DPO family) or averaged (simpo, orpo) logps
    double nll_loss = 0, log_odds_ratio = 0, log_odds_chosen = 0;  // ORPO
    int    pairs = 0;
    void   add(const PreferenceMetrics & other);
};

// The loss of a micro-batch as its share of the step's mean over `step_pairs` pairs, its metrics,
// and dlogp [2n*T]. `ref` holds the reference model's summed completion logps [2n] in the same
// row order (ignored, and may be empty, for simpo and orpo). For ORPO, `step_nll_tokens` is the
// number of NLL tokens (chosen rows' targets) in the whole step. Each pair adds loss/step_pairs
// to the step's loss: dlogp at a completion token is d(pair loss)/d(row's summed logp) / step_pairs
// (through the 1/n of the averaged forms: ipo, simpo, orpo). Per-pair math is in double.
// InputError: a loss that averages over an empty completion, ref of the wrong size, beta <= 0,
// label_smoothing outside [0, 0.5), more pairs or NLL tokens than the step's, or (ORPO) a batch
// whose prompt targets disagree with orpo_prompt_nll. ORPO's averages are clamped to <= 0 (f32
// rounding can push them above) before log1mexp.
PreferenceMetrics preference_objective(const PreferenceConfig & config, const PreferenceBatch & pb,
                                       const std::vector<float> & logp, const std::vector<double> & ref,
                                       int step_pairs, long step_nll_tokens, std::vector<float> & dlogp);

// Targets on the chosen rows (ORPO's NLL count for a micro-batch).
long chosen_target_count(const PreferenceBatch & pb);

// log(1 - exp(x)) for x < 0, without cancellation (Maechler's log1mexp).
double log1mexp(double x);

}  // namespace paft
