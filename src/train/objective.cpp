#include "train/objective.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numbers>
#include <utility>

namespace paft {
namespace {

// ---- numerics ---------------------------------------------------------------------------------

// log(sigmoid(x)) = -softplus(-x), without overflow or cancellation for any x.
double log_sigmoid(double x) {
    return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

double sigmoid(double x) {
    if (x >= 0) {
        return 1.0 / (1.0 + std::exp(-x));
    }
    const double e = std::exp(x);
    return e / (1.0 + e);
}

// ---- preference batches -----------------------------------------------------------------------

// Positions [begin, end) of `row` whose target is a completion token: token t is predicted at
// position t-1, so completion tokens t in [max(prompt, 1), length) give positions t-1 (a row's
// first token is never predicted, as in TRL's shifted completion mask).
std::pair<int, int> completion_positions(const PreferenceBatch & pb, int row) {
    const int first = std::max(pb.prompt_length[row], 1);
    return {first - 1, std::max(pb.length[row] - 1, first - 1)};
}

void check_logp(const Batch & batch, const std::vector<float> & logp) {
    if (logp.size() != (size_t) batch.tokens()) {
        throw InputError(fmt::format("{} log-probabilities for a batch of {} x {} positions", logp.size(), batch.B,
                                     batch.T));
    }
}

// Whether the chosen rows carry targets on their prompts (a batch built with prompt_targets);
// rows whose prompt has fewer than 2 tokens say nothing and are skipped.
void check_orpo_targets(const PreferenceBatch & pb, bool prompt_nll) {
    for (int i = 0; i < pb.pairs; i++) {
        if (pb.prompt_length[i] < 2) {
            continue;
        }
        const bool has = pb.batch.targets[(size_t) i * pb.batch.T] >= 0;
        if (has != prompt_nll) {
            throw InputError(prompt_nll ? "ORPO's NLL over the prompt needs a preference batch built with prompt targets"
                                        : "ORPO's NLL over the completion needs a preference batch without prompt "
                                          "targets");
        }
    }
}

void check_config(const PreferenceConfig & config) {
    if (!(config.beta > 0) || !std::isfinite(config.beta)) {
        throw InputError(fmt::format("beta must be a positive number, got {}", config.beta));
    }
    if (!(config.label_smoothing >= 0 && config.label_smoothing < 0.5)) {
        throw InputError(fmt::format("label_smoothing must lie in [0, 0.5), got {}", config.label_smoothing));
    }
    if (!std::isfinite(config.simpo_gamma)) {
        throw InputError("simpo_gamma must be a finite number");
    }
}

// ---- per-pair losses --------------------------------------------------------------------------

// One pair's loss, its derivatives with respect to the chosen and rejected rows' SUMMED
// completion logps, and the values TRL logs.
struct PairTerms {
    double loss = 0, d_chosen = 0, d_rejected = 0;
    double reward_chosen = 0, reward_rejected = 0, logps_chosen = 0, logps_rejected = 0;
    double log_odds = 0, log_odds_ratio = 0;  // ORPO
};

// sigmoid / ipo / hinge / robust on the log-ratios (policy - reference, summed) lc and lr, whose
// completions have nc and nr tokens; sc and sr are the policy's summed logps (logged).
PairTerms dpo_pair(const PreferenceConfig & c, double lc, double lr, int nc, int nr, double sc, double sr) {
    PairTerms    p;
    const double beta = c.beta, eps = c.label_smoothing;
    const double x    = beta * (lc - lr);
    double       d_delta = 0;  // d(loss)/d(lc - lr): the chosen row gets +, the rejected row -
    switch (c.loss) {
    case PreferenceLoss::sigmoid:
        p.loss  = -log_sigmoid(x);
        d_delta = -beta * sigmoid(-x);
        break;
    case PreferenceLoss::robust:
        p.loss  = (-(1 - eps) * log_sigmoid(x) + eps * log_sigmoid(-x)) / (1 - 2 * eps);
        d_delta = beta * (-(1 - eps) * sigmoid(-x) - eps * sigmoid(x)) / (1 - 2 * eps);
        break;
    case PreferenceLoss::hinge:
        p.loss  = std::max(0.0, 1 - x);
        d_delta = 1 - x > 0 ? -beta : 0.0;  // torch's relu: zero gradient at the kink
        break;
    default:
        break;
    }
    p.d_chosen   = d_delta;
    p.d_rejected = -d_delta;
    if (c.loss == PreferenceLoss::ipo) {
        // per-token-averaged log-ratios, pulled to a margin of 1/(2 beta)
        const double gap = lc / nc - lr / nr - 1 / (2 * beta);
        p.loss           = gap * gap;
        p.d_chosen       = 2 * gap / nc;
        p.d_rejected     = -2 * gap / nr;
    }
    p.reward_chosen   = beta * lc;
    p.reward_rejected = beta * lr;
    p.logps_chosen    = sc;
    p.logps_rejected  = sr;
    return p;
}

// SimPO (CPO's loss_type "simpo" with cpo_alpha = 0) on the averaged logps ac, ar.
PairTerms simpo_pair(const PreferenceConfig & c, double ac, double ar, int nc, int nr) {
    PairTerms    p;
    const double eps = c.label_smoothing;
    const double z   = c.beta * (ac - ar) - c.simpo_gamma;
    p.loss           = -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
    const double d_z = -(1 - eps) * sigmoid(-z) + eps * sigmoid(z);
    p.d_chosen       = d_z * c.beta / nc;
    p.d_rejected     = -d_z * c.beta / nr;
    p.reward_chosen  = c.beta * ac;
    p.reward_rejected = c.beta * ar;
    p.logps_chosen   = ac;
    p.logps_rejected = ar;
    return p;
}

// ORPO's odds-ratio term -beta * log sigmoid(log_odds) on the averaged logps ac, ar (the NLL is
// added by the caller). With p = exp(a), log_odds = log(p+/(1-p+)) - log(p-/(1-p-)) and
// d log_odds/d a = 1/(1 - p) = exp(-log1mexp(a)) (negated for the rejected side).
PairTerms orpo_pair(const PreferenceConfig & c, double ac, double ar, int nc, int nr) {
    PairTerms p;
    // An average logp can only exceed 0 by rounding (f32 log-softmax); log1mexp needs <= 0.
    const double a_c = std::min(ac, 0.0), a_r = std::min(ar, 0.0);
    const double u_c = log1mexp(a_c), u_r = log1mexp(a_r);
    const double lo  = (a_c - a_r) - (u_c - u_r);
    p.log_odds       = lo;
    p.log_odds_ratio = log_sigmoid(lo);
    p.loss           = -c.beta * p.log_odds_ratio;
    // d log_sigmoid(lo)/d a_c = sigmoid(-lo) / (1 - p_c) = exp(log_sigmoid(-lo) - u_c). When p_c
    // -> 1, u_c -> -inf and lo -> +inf: for lo > 0 the exponent is rewritten with u_c cancelled
    // (log_sigmoid(-lo) = -lo - log1p(exp(-lo))), so the chosen side stays finite at a_c = 0.
    const double ls_neg = log_sigmoid(-lo);
    const double e_c    = lo > 0 ? (a_r - a_c - u_r) - std::log1p(std::exp(-lo)) : ls_neg - u_c;
    const double g_c    = std::exp(e_c);
    const double g_r    = -std::exp(ls_neg - u_r);
    p.d_chosen          = -c.beta * g_c / nc;
    p.d_rejected        = -c.beta * g_r / nr;
    p.reward_chosen     = c.beta * ac;
    p.reward_rejected   = c.beta * ar;
    p.logps_chosen      = ac;
    p.logps_rejected    = ar;
    return p;
}

bool averaged(PreferenceLoss loss) {
    return loss == PreferenceLoss::ipo || loss == PreferenceLoss::simpo || loss == PreferenceLoss::orpo;
}

}  // namespace

// ---- SFT --------------------------------------------------------------------------------------

Batch sft_batch(const std::vector<const SftExample *> & examples, int pad_id, int vocab_size) {
    if (examples.empty()) {
        throw InputError("an SFT batch needs at least one example");
    }
    std::vector<std::vector<int32_t>> rows, labels;
    for (const SftExample * e : examples) {
        rows.push_back(e->input_ids);
        labels.push_back(e->labels);
    }
    return batch_from_rows(rows, &labels, pad_id, false, vocab_size);
}

SftTerms sft_objective(const Batch & batch, const std::vector<float> & logp, long step_tokens,
                       std::vector<float> & dlogp) {
    check_logp(batch, logp);
    if (step_tokens <= 0) {
        throw InputError("the step has no trained token");
    }
    SftTerms     terms;
    const float  g = (float) (-1.0 / (double) step_tokens);
    dlogp.assign(logp.size(), 0.0f);
    for (size_t n = 0; n < logp.size(); n++) {
        if (batch.targets[n] >= 0) {
            terms.nll_sum -= logp[n];
            terms.tokens++;
            dlogp[n] = g;
        }
    }
    if (terms.tokens > step_tokens) {
        throw InputError(fmt::format("the micro-batch has {} trained tokens, more than its step's {}", terms.tokens,
                                     step_tokens));
    }
    return terms;
}

// ---- preferences ------------------------------------------------------------------------------

namespace {
const char * const kLossNames[] = {"sigmoid", "ipo", "hinge", "robust", "simpo", "orpo"};
}

PreferenceLoss preference_loss_from_name(const std::string & name) {
    for (int i = 0; i < (int) std::size(kLossNames); i++) {
        if (name == kLossNames[i]) {
            return (PreferenceLoss) i;
        }
    }
    throw InputError(fmt::format("unknown preference loss '{}' (known: sigmoid, ipo, hinge, robust, simpo, orpo)",
                                 name));
}

const char * preference_loss_name(PreferenceLoss loss) {
    return kLossNames[(int) loss];
}

bool needs_reference(PreferenceLoss loss) {
    return loss != PreferenceLoss::simpo && loss != PreferenceLoss::orpo;
}

PreferenceBatch preference_batch(const std::vector<const PreferenceExample *> & examples, bool prompt_targets,
                                 int pad_id, int vocab_size) {
    if (examples.empty()) {
        throw InputError("a preference batch needs at least one pair");
    }
    PreferenceBatch                   pb;
    std::vector<std::vector<int32_t>> rows, labels;
    pb.pairs = (int) examples.size();
    for (bool chosen : {true, false}) {
        for (const PreferenceExample * e : examples) {
            rows.push_back(e->sequence(chosen));
            // every next token of the row (HF's labels = input_ids), or the completion's only
            labels.push_back(chosen && prompt_targets ? rows.back() : e->labels(chosen));
            pb.prompt_length.push_back((int) e->prompt_ids.size());
            pb.length.push_back((int) rows.back().size());
        }
    }
    pb.batch = batch_from_rows(rows, &labels, pad_id, false, vocab_size);
    return pb;
}

CompletionLogps completion_logps(const PreferenceBatch & pb, const std::vector<float> & logp) {
    check_logp(pb.batch, logp);
    CompletionLogps out;
    for (int row = 0; row < 2 * pb.pairs; row++) {
        const auto [begin, end] = completion_positions(pb, row);
        const float * lp        = logp.data() + (size_t) row * pb.batch.T;
        double        sum       = 0;
        for (int t = begin; t < end; t++) {
            sum += lp[t];
        }
        out.sum.push_back(sum);
        out.tokens.push_back(end - begin);
    }
    return out;
}

long chosen_target_count(const PreferenceBatch & pb) {
    long count = 0;
    for (size_t n = 0; n < (size_t) pb.pairs * pb.batch.T; n++) {
        count += pb.batch.targets[n] >= 0;
    }
    return count;
}

void PreferenceMetrics::add(const PreferenceMetrics & o) {
    loss += o.loss;
    reward_chosen += o.reward_chosen;
    reward_rejected += o.reward_rejected;
    reward_accuracy += o.reward_accuracy;
    reward_margin += o.reward_margin;
    logps_chosen += o.logps_chosen;
    logps_rejected += o.logps_rejected;
    nll_loss += o.nll_loss;
    log_odds_ratio += o.log_odds_ratio;
    log_odds_chosen += o.log_odds_chosen;
    pairs += o.pairs;
}

PreferenceMetrics preference_objective(const PreferenceConfig & config, const PreferenceBatch & pb,
                                       const std::vector<float> & logp, const std::vector<double> & ref,
                                       int step_pairs, long step_nll_tokens, std::vector<float> & dlogp) {
    check_config(config);
    const int n = pb.pairs, T = pb.batch.T;
    if (step_pairs < n) {
        throw InputError(fmt::format("the micro-batch has {} pairs, more than its step's {}", n, step_pairs));
    }
    if (needs_reference(config.loss) && ref.size() != (size_t) 2 * n) {
        throw InputError(fmt::format("the {} loss needs the reference's logps of {} rows, got {}",
                                     preference_loss_name(config.loss), 2 * n, ref.size()));
    }
    const CompletionLogps pol = completion_logps(pb, logp);
    dlogp.assign(logp.size(), 0.0f);
    PreferenceMetrics m;
    m.pairs = n;

    for (int i = 0; i < n; i++) {
        const int    c = i, r = n + i;  // the pair's chosen and rejected rows
        const int    nc = pol.tokens[c], nr = pol.tokens[r];
        if (averaged(config.loss) && (nc == 0 || nr == 0)) {
            throw InputError(fmt::format("pair {} has an empty completion, which the {} loss averages over", i,
                                         preference_loss_name(config.loss)));
        }
        PairTerms p;
        if (needs_reference(config.loss)) {
            p = dpo_pair(config, pol.sum[c] - ref[c], pol.sum[r] - ref[r], nc, nr, pol.sum[c], pol.sum[r]);
        } else if (config.loss == PreferenceLoss::simpo) {
            p = simpo_pair(config, pol.sum[c] / nc, pol.sum[r] / nr, nc, nr);
        } else {
            p = orpo_pair(config, pol.sum[c] / nc, pol.sum[r] / nr, nc, nr);
        }
        m.loss += p.loss;
        m.reward_chosen += p.reward_chosen;
        m.reward_rejected += p.reward_rejected;
        m.reward_accuracy += p.reward_chosen > p.reward_rejected ? 1.0 : 0.0;
        m.reward_margin += p.reward_chosen - p.reward_rejected;
        m.logps_chosen += p.logps_chosen;
        m.logps_rejected += p.logps_rejected;
        m.log_odds_ratio += p.log_odds_ratio;
        m.log_odds_chosen += p.log_odds;
        // every completion token of a row gets d(pair loss)/d(row sum), as the pair's 1/step_pairs share
        for (auto [row, d] : {std::pair{c, p.d_chosen}, std::pair{r, p.d_rejected}}) {
            const auto [begin, end] = completion_positions(pb, row);
            for (int t = begin; t < end; t++) {
                dlogp[(size_t) row * T + t] = (float) (d / step_pairs);
            }
        }
    }

    if (config.loss == PreferenceLoss::orpo) {
        // NLL: token mean over the step's chosen targets; this micro-batch adds its share.
        check_orpo_targets(pb, config.orpo_prompt_nll);
        const long count = chosen_target_count(pb);
        if (step_nll_tokens <= 0 || count > step_nll_tokens) {
            throw InputError(fmt::format("ORPO: {} NLL tokens in the micro-batch, {} in its step", count,
                                         step_nll_tokens));
        }
        double nll_sum = 0;
        for (size_t k = 0; k < (size_t) n * T; k++) {
            if (pb.batch.targets[k] >= 0) {
                nll_sum -= logp[k];
                dlogp[k] += (float) (-1.0 / (double) step_nll_tokens);
            }
        }
        // scaled by step_pairs so that, like the other sums, the step's total / its pairs is TRL's value
        m.nll_loss = nll_sum / (double) step_nll_tokens * step_pairs;
        m.loss += m.nll_loss;
    }
    return m;
}

double log1mexp(double x) {
    // Maechler (2012): log1p(-exp(x)) is accurate for x < -ln 2, log(-expm1(x)) near 0
    return x < -std::numbers::ln2 ? std::log1p(-std::exp(x)) : std::log(-std::expm1(x));
}

}  // namespace paft
