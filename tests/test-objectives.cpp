// Training objectives (src/train/objective.h) and the L1 penalty (src/train/l1.h).
//
// Against the PyTorch float64 oracle (tools/reference/make_train_cases.py, TRL's formulas written
// independently there): for each preference loss (sigmoid, ipo, hinge, robust, simpo, orpo with
// and without the prompt in its NLL) the loss, TRL's logged metrics and every LoRA gradient, with
// the reference = the same model with the adapter off; SFT + L1: cross-entropy, penalty and
// gradients. Then properties (micro-batches add up to the batch, B = 0 gives ln 2), hand-computed
// values of each formula on small inputs, and edge cases of log1mexp and ORPO.
//
// Error measure: rel_error (max |paft - oracle| / max |oracle| over a tensor).
#include "core/backend.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/transformer.h"
#include "train/l1.h"
#include "train/objective.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

using namespace paft;

namespace {

const std::string kCases = std::string(PAFT_TESTDATA) + "/train";
constexpr int     kPad   = 0;

// The largest errors seen, printed at the end of each test (for the record, not a bound).
struct MaxError {
    double value = 0;
    void   add(double e) { value = nan_max(value, e); }
};

struct TrainCase {
    std::string                    dir;
    std::shared_ptr<Model>         model;
    LoraAdapter                    adapter;  // the oracle's adapter (nonzero A and B)
    TensorStore                    expected;
    nlohmann::json                 runs;
    std::vector<PreferenceExample> pairs;
    std::vector<SftExample>        sft;

    explicit TrainCase(const std::string & name)
        : dir(kCases + "/" + name), model(Model::load(dir + "/model")),
          adapter(LoraAdapter::load(dir + "/adapter", model->config())),
          expected(TensorStore::open_file(dir + "/expected.safetensors")),
          runs(nlohmann::json::parse(read_file(dir + "/runs.json"))) {
        for (const auto & p : nlohmann::json::parse(read_file(dir + "/pairs.json"))) {
            PreferenceExample e;
            e.prompt_ids   = p["prompt_ids"].get<std::vector<int32_t>>();
            e.chosen_ids   = p["chosen_ids"].get<std::vector<int32_t>>();
            e.rejected_ids = p["rejected_ids"].get<std::vector<int32_t>>();
            pairs.push_back(e);
        }
        for (const auto & s : nlohmann::json::parse(read_file(dir + "/sft.json"))) {
            SftExample e;
            e.input_ids = s["input_ids"].get<std::vector<int32_t>>();
            e.labels    = s["labels"].get<std::vector<int32_t>>();
            sft.push_back(e);
        }
    }

    int                vocab() const { return model->config().vocab_size; }
    std::vector<float> want(const std::string & name) const {
        std::vector<int64_t> shape;
        return expected.read_f32_any(name, &shape);
    }
    double want1(const std::string & name) const { return want(name).at(0); }
    bool   has(const std::string & name) const { return expected.has(name); }

    std::vector<const PreferenceExample *> pair_range(int first, int count) const {
        std::vector<const PreferenceExample *> out;
        for (int i = first; i < first + count; i++) {
            out.push_back(&pairs[i]);
        }
        return out;
    }
};

PreferenceConfig config_of(const nlohmann::json & run) {
    PreferenceConfig c;
    c.loss            = preference_loss_from_name(run["loss"].get<std::string>());
    c.beta            = run["beta"].get<double>();
    c.label_smoothing = run["label_smoothing"].get<double>();
    c.simpo_gamma     = run["simpo_gamma"].get<double>();
    c.orpo_prompt_nll = run["orpo_prompt_nll"].get<bool>();
    return c;
}

bool prompt_targets(const PreferenceConfig & c) {
    return c.loss == PreferenceLoss::orpo && c.orpo_prompt_nll;
}

// Reference logps (adapter off, when the loss needs them), the policy's forward, the objective and
// the backward, accumulating into `grads` (the adapter's layout).
PreferenceMetrics run_preference(Backend & backend, const TrainCase & c, const LoraAdapter & adapter,
                                 const PreferenceConfig & config, const PreferenceBatch & pb, int step_pairs,
                                 long step_nll_tokens, float * grads) {
    Transformer         t(backend, c.model);
    std::vector<double> ref;
    if (needs_reference(config.loss)) {
        ref = completion_logps(pb, t.forward(pb.batch, nullptr)).sum;
    }
    const std::vector<float> & logp = t.forward(pb.batch, &adapter);
    std::vector<float>         dlogp;
    PreferenceMetrics m = preference_objective(config, pb, logp, ref, step_pairs, step_nll_tokens, dlogp);
    t.backward(pb.batch, &adapter, dlogp.data(), {grads, nullptr});
    return m;
}

// Every LoRA gradient in `grads` against the oracle's {prefix}.grad.{PEFT key}.
void check_grads(const TrainCase & c, const std::vector<float> & grads, const std::string & prefix, double bound,
                 MaxError & worst) {
    int checked = 0;
    for (int l = 0; l < c.model->config().num_layers; l++) {
        for (int target = 0; target < TARGET_COUNT; target++) {
            if (!c.adapter.has(l, target)) {
                continue;
            }
            for (char which : {'A', 'B'}) {
                const std::string key  = c.adapter.peft_key(l, target, which);
                const size_t      off  = which == 'A' ? c.adapter.offset_A(l, target) : c.adapter.offset_B(l, target);
                const double      err  = rel_error(grads.data() + off, c.want(prefix + ".grad." + key));
                EXPECT_LE(err, bound) << prefix << " " << key;
                worst.add(err);
                checked++;
            }
        }
    }
    EXPECT_GT(checked, 0);
}

double scalar_error(double got, double want) {
    return rel_error(std::vector<double>{got}, std::vector<double>{want});
}

class Objectives : public ::testing::TestWithParam<std::string> {
protected:
    std::unique_ptr<Backend> backend = make_backend(2);
};

// ---- against the oracle -----------------------------------------------------------------------

TEST_P(Objectives, PreferenceLossesMatchOracle) {
    TrainCase c(GetParam());
    const int n = (int) c.pairs.size();
    for (const auto & run : c.runs["preference"]) {
        const std::string      name   = run["name"];
        const PreferenceConfig config = config_of(run);
        SCOPED_TRACE(name);
        const PreferenceBatch pb = preference_batch(c.pair_range(0, n), prompt_targets(config), kPad, c.vocab());
        LoraAdapter &         a  = c.adapter;
        a.zero_grads();
        const PreferenceMetrics m =
            run_preference(*backend, c, a, config, pb, n, chosen_target_count(pb), a.grads().data());
        ASSERT_EQ(m.pairs, n);

        MaxError scalars, grads;
        scalars.add(scalar_error(m.loss / n, c.want1(name + ".loss")));
        EXPECT_LE(scalar_error(m.loss / n, c.want1(name + ".loss")), 1e-4) << "loss";
        const std::pair<const char *, double> metrics[] = {
            {"reward_chosen", m.reward_chosen},   {"reward_rejected", m.reward_rejected},
            {"reward_margin", m.reward_margin},   {"logps_chosen", m.logps_chosen},
            {"logps_rejected", m.logps_rejected}, {"nll_loss", m.nll_loss},
            {"log_odds_ratio", m.log_odds_ratio}, {"log_odds_chosen", m.log_odds_chosen},
        };
        for (const auto & [metric, sum] : metrics) {
            if (c.has(name + "." + metric)) {
                const double err = scalar_error(sum / n, c.want1(name + "." + metric));
                EXPECT_LE(err, 1e-4) << metric;
                scalars.add(err);
            }
        }
        EXPECT_NEAR(m.reward_accuracy / n, c.want1(name + ".reward_accuracy"), 1e-6);  // a fraction of n
        check_grads(c, a.grads(), name, 1e-4, grads);
        std::printf("[ %s %s ] max rel error: loss/metrics %.2e, gradients %.2e\n", GetParam().c_str(),
                    name.c_str(), scalars.value, grads.value);
    }
}

TEST_P(Objectives, SftWithL1MatchesOracle) {
    TrainCase     c(GetParam());
    const double  lambda = c.runs["sft"]["l1_lambda"].get<double>();
    LoraAdapter & a      = c.adapter;
    std::vector<const SftExample *> examples;
    for (const auto & e : c.sft) {
        examples.push_back(&e);
    }
    const Batch batch = sft_batch(examples, kPad, c.vocab());
    Transformer t(*backend, c.model);
    a.zero_grads();
    std::vector<float> dlogp;
    const SftTerms     terms = sft_objective(batch, t.forward(batch, &a), batch.target_count(), dlogp);
    t.backward(batch, &a, dlogp.data(), {a.grads().data(), nullptr});
    const DeltaStats stats = l1_penalty(*backend, a, lambda, 1e-5, a.grads().data());

    const double ce = terms.nll_sum / (double) terms.tokens;
    EXPECT_EQ(terms.tokens, batch.target_count());
    EXPECT_LE(scalar_error(ce, c.want1("sft.ce")), 1e-5);
    EXPECT_LE(scalar_error(stats.l1, c.want1("sft.l1")), 1e-5);
    EXPECT_LE(scalar_error(ce + lambda * stats.l1, c.want1("sft.loss")), 1e-5);
    MaxError grads;
    check_grads(c, a.grads(), "sft", 1e-4, grads);
    std::printf("[ %s sft+l1 ] rel error: ce %.2e, l1 %.2e; gradients max %.2e\n", GetParam().c_str(),
                scalar_error(ce, c.want1("sft.ce")), scalar_error(stats.l1, c.want1("sft.l1")), grads.value);
}

// The penalty's subgradient alone, and the same from inside an OpenMP parallel region (each
// thread its own buffer): bit-identical to the serial call.
TEST_P(Objectives, L1SubgradientMatchesOracle) {
    TrainCase     c(GetParam());
    const double  lambda = c.runs["sft"]["l1_lambda"].get<double>();
    LoraAdapter & a      = c.adapter;
    a.zero_grads();
    const DeltaStats serial = l1_penalty(*backend, a, lambda, 1e-5, a.grads().data());
    MaxError         grads;
    check_grads(c, a.grads(), "l1", 1e-5, grads);
    std::printf("[ %s l1 ] subgradient max rel error %.2e\n", GetParam().c_str(), grads.value);

    std::vector<std::vector<float>> per_thread(2, std::vector<float>(a.grads().size(), 0.0f));
    std::vector<DeltaStats>         stats(2);
#pragma omp parallel for num_threads(2)
    for (int i = 0; i < 2; i++) {
        stats[i] = l1_penalty(*backend, a, lambda, 1e-5, per_thread[i].data());
    }
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ(per_thread[i], a.grads()) << "thread " << i;
        EXPECT_EQ(stats[i].l1, serial.l1);
        EXPECT_EQ(stats[i].zeros, serial.zeros);
        EXPECT_EQ(stats[i].total, serial.total);
    }
}

// ---- properties -------------------------------------------------------------------------------

// Two micro-batches given the step's pair and NLL-token counts add up to the one batch: loss,
// metrics and gradients (within f32 rounding: the rows are padded to other lengths).
TEST_P(Objectives, MicroBatchesAddUp) {
    TrainCase c(GetParam());
    const int n = (int) c.pairs.size(), first = n / 2;
    for (const auto & run : c.runs["preference"]) {
        const PreferenceConfig config = config_of(run);
        SCOPED_TRACE(run["name"].get<std::string>());
        const bool            pt    = prompt_targets(config);
        const PreferenceBatch whole = preference_batch(c.pair_range(0, n), pt, kPad, c.vocab());
        const PreferenceBatch part1 = preference_batch(c.pair_range(0, first), pt, kPad, c.vocab());
        const PreferenceBatch part2 = preference_batch(c.pair_range(first, n - first), pt, kPad, c.vocab());
        const long            nll   = chosen_target_count(whole);
        ASSERT_EQ(chosen_target_count(part1) + chosen_target_count(part2), nll);

        LoraAdapter & a = c.adapter;
        a.zero_grads();
        const PreferenceMetrics one  = run_preference(*backend, c, a, config, whole, n, nll, a.grads().data());
        const std::vector<float> g1  = a.grads();
        a.zero_grads();
        PreferenceMetrics two = run_preference(*backend, c, a, config, part1, n, nll, a.grads().data());
        two.add(run_preference(*backend, c, a, config, part2, n, nll, a.grads().data()));

        EXPECT_EQ(two.pairs, one.pairs);
        EXPECT_LE(scalar_error(two.loss, one.loss), 1e-5);
        EXPECT_LE(scalar_error(two.reward_margin, one.reward_margin), 1e-5);
        EXPECT_LE(scalar_error(two.logps_chosen, one.logps_chosen), 1e-5);
        EXPECT_LE(scalar_error(two.nll_loss, one.nll_loss), 1e-5);
        EXPECT_LE(scalar_error(two.log_odds_ratio, one.log_odds_ratio), 1e-5);
        EXPECT_EQ(two.reward_accuracy, one.reward_accuracy);
        EXPECT_LE(rel_error(a.grads().data(), g1), 1e-5);
    }
}

// A fresh adapter (PEFT's init: B = 0) is the reference model itself: every log-ratio is 0, so
// DPO's loss is ln 2 and the rewards are 0; d/dA is 0 (it goes through B), d/dB is not.
TEST_P(Objectives, FreshAdapterGivesLn2) {
    TrainCase   c(GetParam());
    LoraAdapter fresh(c.model->config(), c.adapter.config());
    fresh.init_peft(123);
    const int             n  = (int) c.pairs.size();
    PreferenceConfig      config;  // sigmoid, beta 0.1
    const PreferenceBatch pb = preference_batch(c.pair_range(0, n), false, kPad, c.vocab());
    fresh.zero_grads();
    const PreferenceMetrics m = run_preference(*backend, c, fresh, config, pb, n, 0, fresh.grads().data());
    EXPECT_NEAR(m.loss / n, std::numbers::ln2, 1e-6);
    EXPECT_EQ(m.reward_chosen, 0.0);
    EXPECT_EQ(m.reward_rejected, 0.0);
    EXPECT_EQ(m.reward_margin, 0.0);
    EXPECT_EQ(m.reward_accuracy, 0.0);  // r+ > r- is false at a tie
    double max_dA = 0, max_dB = 0;
    for (int l = 0; l < c.model->config().num_layers; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!fresh.has(l, t)) {
                continue;
            }
            for (int i = 0; i < fresh.config().r * fresh.in_features(t); i++) {
                max_dA = std::max(max_dA, (double) std::fabs(fresh.dA(l, t)[i]));
            }
            for (int i = 0; i < fresh.config().r * fresh.out_features(t); i++) {
                max_dB = std::max(max_dB, (double) std::fabs(fresh.dB(l, t)[i]));
            }
        }
    }
    EXPECT_EQ(max_dA, 0.0);
    EXPECT_GT(max_dB, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Cases, Objectives, ::testing::Values("llama_pairs", "qwen2_pairs"));

// ---- hand-computed values ---------------------------------------------------------------------

// One pair: prompt 3 tokens, chosen 2, rejected 3; rows [chosen (5 tokens), rejected (6)], T = 6.
// Completion logps: chosen -1, -2 (sum -3, mean -1.5), rejected -1, -1, -2 (sum -4, mean -4/3);
// chosen prompt positions -0.5, -0.25 (ORPO's prompt NLL). Reference sums: -3.5 and -3.0, so the
// log-ratios are 0.5 and -1 and delta = 1.5.
struct HandPair {
    PreferenceExample   example;
    std::vector<double> ref = {-3.5, -3.0};
    HandPair() {
        example.prompt_ids   = {5, 6, 7};
        example.chosen_ids   = {8, 9};
        example.rejected_ids = {1, 2, 3};
    }
    PreferenceBatch batch(bool prompt_targets) const { return preference_batch({&example}, prompt_targets, kPad, 10); }
    static std::vector<float> logp(const PreferenceBatch & pb) {
        std::vector<float> lp(pb.batch.tokens(), 0.0f);
        const int          T = pb.batch.T;
        lp[0] = -0.5f;  // chosen row, predicting prompt tokens 1 and 2
        lp[1] = -0.25f;
        lp[2] = -1.0f;  // chosen completion (tokens 3, 4 predicted at 2, 3)
        lp[3] = -2.0f;
        lp[T + 2] = -1.0f;  // rejected completion (tokens 3, 4, 5)
        lp[T + 3] = -1.0f;
        lp[T + 4] = -2.0f;
        return lp;
    }
};

struct HandResult {
    PreferenceMetrics  m;
    std::vector<float> dlogp;
};

HandResult hand_run(PreferenceLoss loss, double beta, double eps = 0, double gamma = 0.5, bool prompt_nll = true) {
    HandPair         h;
    PreferenceConfig c;
    c.loss            = loss;
    c.beta            = beta;
    c.label_smoothing = eps;
    c.simpo_gamma     = gamma;
    c.orpo_prompt_nll = prompt_nll;
    const PreferenceBatch pb = h.batch(loss == PreferenceLoss::orpo && prompt_nll);
    HandResult            r;
    r.m = preference_objective(c, pb, HandPair::logp(pb), h.ref, 1, chosen_target_count(pb), r.dlogp);
    return r;
}

// d(loss)/d(logp) at the chosen completion's positions (2, 3) and the rejected's (T+2 .. T+4)
void expect_row_grads(const HandResult & r, double d_chosen, double d_rejected) {
    const int T = 6;
    for (int t : {2, 3}) {
        EXPECT_NEAR(r.dlogp[t], d_chosen, 1e-7) << "position " << t;
    }
    for (int t : {T + 2, T + 3, T + 4}) {
        EXPECT_NEAR(r.dlogp[t], d_rejected, 1e-7) << "position " << t;
    }
    for (int t : {0, 1, 4, 5, T, T + 1, T + 5}) {  // prompt and padding: nothing (no NLL here)
        EXPECT_EQ(r.dlogp[t], 0.0f) << "position " << t;
    }
}

TEST(ObjectivesByHand, Batch) {
    HandPair              h;
    const PreferenceBatch pb = h.batch(false);
    EXPECT_EQ(pb.pairs, 1);
    EXPECT_EQ(pb.batch.B, 2);
    EXPECT_EQ(pb.batch.T, 6);
    EXPECT_EQ(pb.prompt_length, (std::vector<int>{3, 3}));
    EXPECT_EQ(pb.length, (std::vector<int>{5, 6}));
    EXPECT_EQ(pb.batch.input_ids, (std::vector<int32_t>{5, 6, 7, 8, 9, kPad, 5, 6, 7, 1, 2, 3}));
    EXPECT_EQ(pb.batch.attention_mask, (std::vector<int32_t>{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1}));
    EXPECT_EQ(pb.batch.targets, (std::vector<int32_t>{-1, -1, 8, 9, -1, -1, -1, -1, 1, 2, 3, -1}));
    EXPECT_EQ(chosen_target_count(pb), 2);
    const PreferenceBatch with_prompt = h.batch(true);  // chosen row only
    EXPECT_EQ(with_prompt.batch.targets, (std::vector<int32_t>{6, 7, 8, 9, -1, -1, -1, -1, 1, 2, 3, -1}));
    EXPECT_EQ(chosen_target_count(with_prompt), 4);
    const CompletionLogps lp = completion_logps(pb, HandPair::logp(pb));
    EXPECT_EQ(lp.sum, (std::vector<double>{-3.0, -4.0}));
    EXPECT_EQ(lp.tokens, (std::vector<int>{2, 3}));
}

TEST(ObjectivesByHand, Sigmoid) {
    // -log sigmoid(0.1 * 1.5); d/d(chosen sum) = -0.1 sigmoid(-0.15)
    const HandResult r = hand_run(PreferenceLoss::sigmoid, 0.1);
    EXPECT_NEAR(r.m.loss, 0.620957047789532078, 1e-12);
    EXPECT_NEAR(r.m.reward_chosen, 0.05, 1e-12);
    EXPECT_NEAR(r.m.reward_rejected, -0.1, 1e-12);
    EXPECT_NEAR(r.m.reward_margin, 0.15, 1e-12);
    EXPECT_EQ(r.m.reward_accuracy, 1.0);
    EXPECT_EQ(r.m.logps_chosen, -3.0);
    EXPECT_EQ(r.m.logps_rejected, -4.0);
    expect_row_grads(r, -0.0462570154656250451, 0.0462570154656250451);
}

TEST(ObjectivesByHand, Ipo) {
    // (0.5/2 - (-1)/3 - 1/(2*0.5))^2 = (-5/12)^2; d/d(chosen sum) = 2 (-5/12) / 2, rejected -2 (-5/12) / 3
    const HandResult r = hand_run(PreferenceLoss::ipo, 0.5);
    EXPECT_NEAR(r.m.loss, 25.0 / 144.0, 1e-12);
    EXPECT_NEAR(r.m.reward_margin, 0.5 * 1.5, 1e-12);  // summed log-ratios
    expect_row_grads(r, -5.0 / 12.0, 5.0 / 18.0);
}

TEST(ObjectivesByHand, Hinge) {
    const HandResult inside = hand_run(PreferenceLoss::hinge, 0.1);  // 1 - 0.15 > 0
    EXPECT_NEAR(inside.m.loss, 0.85, 1e-12);
    expect_row_grads(inside, -0.1, 0.1);
    const HandResult outside = hand_run(PreferenceLoss::hinge, 1.0);  // 1 - 1.5 < 0
    EXPECT_EQ(outside.m.loss, 0.0);
    expect_row_grads(outside, 0.0, 0.0);
}

TEST(ObjectivesByHand, Robust) {
    // [-(0.9) log sigmoid(0.15) + 0.1 log sigmoid(-0.15)] / 0.8
    const HandResult r = hand_run(PreferenceLoss::robust, 0.1, 0.1);
    EXPECT_NEAR(r.m.loss, 0.602207047789532078, 1e-12);
    expect_row_grads(r, -0.0587570154656250451, 0.0587570154656250451);
    // epsilon 0 is the sigmoid loss
    EXPECT_NEAR(hand_run(PreferenceLoss::robust, 0.1, 0.0).m.loss, 0.620957047789532078, 1e-12);
}

TEST(ObjectivesByHand, Simpo) {
    // z = 2 (-1.5 + 4/3) - 0.5 = -5/6; loss -log sigmoid(z); d/dz = -sigmoid(-z) = -0.69705928...;
    // chosen: d/dz * beta / 2, rejected: -d/dz * beta / 3; no reference needed
    HandPair         h;
    PreferenceConfig c;
    c.loss = PreferenceLoss::simpo;
    c.beta = 2.0;
    const PreferenceBatch pb = h.batch(false);
    HandResult            r;
    r.m = preference_objective(c, pb, HandPair::logp(pb), {}, 1, 0, r.dlogp);
    EXPECT_NEAR(r.m.loss, 1.19421814926753677, 1e-12);
    EXPECT_NEAR(r.m.reward_chosen, 2.0 * -1.5, 1e-12);
    EXPECT_NEAR(r.m.reward_rejected, 2.0 * -4.0 / 3.0, 1e-12);
    EXPECT_EQ(r.m.reward_accuracy, 0.0);
    EXPECT_NEAR(r.m.logps_chosen, -1.5, 1e-12);
    expect_row_grads(r, -0.697059283965407279, 0.464706189310271520);
}

TEST(ObjectivesByHand, Orpo) {
    // log_odds = (-1.5 + 4/3) - (log(1 - e^-1.5) - log(1 - e^-4/3)) = -0.22016215105438871;
    // log sigmoid of it = -0.80927498023566937. NLL over the completion: 3/2; over prompt +
    // completion: (0.5 + 0.25 + 1 + 2)/4.
    const HandResult completion = hand_run(PreferenceLoss::orpo, 0.1, 0, 0.5, false);
    EXPECT_NEAR(completion.m.log_odds_chosen, -0.220162151054388707, 1e-12);
    EXPECT_NEAR(completion.m.log_odds_ratio, -0.809274980235669366, 1e-12);
    EXPECT_NEAR(completion.m.nll_loss, 1.5, 1e-7);
    EXPECT_NEAR(completion.m.loss, 1.58092749802356694, 1e-7);
    EXPECT_NEAR(completion.m.reward_chosen, -0.15, 1e-12);
    // odds term: chosen -0.1 sigmoid(-lo)/(1 - e^-1.5)/2, rejected +0.1 sigmoid(-lo)/(1 - e^-4/3)/3;
    // the NLL adds -1/2 on the chosen completion
    expect_row_grads(completion, -0.0357086385309946585 - 0.5, 0.0251139385181177824);

    const HandResult prompt = hand_run(PreferenceLoss::orpo, 0.1, 0, 0.5, true);
    EXPECT_NEAR(prompt.m.nll_loss, 0.9375, 1e-7);
    EXPECT_NEAR(prompt.m.loss, 1.01842749802356694, 1e-7);
    EXPECT_NEAR(prompt.dlogp[0], -0.25, 1e-7);  // NLL only on the prompt's targets
    EXPECT_NEAR(prompt.dlogp[2], -0.0357086385309946585 - 0.25, 1e-7);
}

TEST(ObjectivesByHand, StepShares) {
    // In a step of 4 pairs this pair adds a quarter of its gradient (the loss sum stays per pair).
    HandPair              h;
    PreferenceConfig      c;
    const PreferenceBatch pb = h.batch(false);
    std::vector<float>    dlogp;
    const PreferenceMetrics m = preference_objective(c, pb, HandPair::logp(pb), h.ref, 4, 0, dlogp);
    EXPECT_NEAR(m.loss, 0.620957047789532078, 1e-12);
    EXPECT_NEAR(dlogp[2], -0.0462570154656250451 / 4, 1e-8);
}

TEST(ObjectivesByHand, Sft) {
    // two rows: [3, 4, 5] trained on 4, 5; [6, 7] trained on 7; a step of 10 tokens
    SftExample a, b;
    a.input_ids = {3, 4, 5};
    a.labels    = {kIgnoreIndex, 4, 5};
    b.input_ids = {6, 7};
    b.labels    = {6, 7};
    const Batch batch = sft_batch({&a, &b}, kPad, 10);
    EXPECT_EQ(batch.targets, (std::vector<int32_t>{4, 5, -1, 7, -1, -1}));
    const std::vector<float> logp = {-1.0f, -2.0f, 0.0f, -0.5f, 0.0f, 0.0f};
    std::vector<float>       dlogp;
    const SftTerms           t = sft_objective(batch, logp, 10, dlogp);
    EXPECT_EQ(t.tokens, 3);
    EXPECT_DOUBLE_EQ(t.nll_sum, 3.5);
    EXPECT_EQ(dlogp, (std::vector<float>{-0.1f, -0.1f, 0.0f, -0.1f, 0.0f, 0.0f}));
}

// ---- edge cases -------------------------------------------------------------------------------

TEST(ObjectivesEdge, Log1mexpExtremeInputs) {
    // log(1 - e^x): near 0 it is log(-x) + x/2; far below, -e^x (values from 80-digit arithmetic)
    EXPECT_NEAR(log1mexp(-1e-10), -23.02585092999045684, 1e-13);
    EXPECT_NEAR(log1mexp(-1e-9), -20.723265837446411156, 1e-13);
    EXPECT_DOUBLE_EQ(log1mexp(-50.0), -1.928749847963917783e-22);
    EXPECT_DOUBLE_EQ(log1mexp(-1.0), -0.458675145387081891);
    EXPECT_DOUBLE_EQ(log1mexp(-std::numbers::ln2), -std::numbers::ln2);
    EXPECT_EQ(log1mexp(-1000.0), 0.0);  // e^-1000 underflows: -0 (exact to double precision)
    EXPECT_EQ(log1mexp(0.0), -INFINITY);
}

// Chosen average logp -1e-9 (p almost 1): log_odds about 20.29, every value finite.
TEST(ObjectivesEdge, OrpoFiniteNearProbabilityOne) {
    PreferenceExample e;
    e.prompt_ids   = {1, 2};
    e.chosen_ids   = {3, 4};
    e.rejected_ids = {5, 6, 7};
    const PreferenceBatch pb = preference_batch({&e}, false, kPad, 10);
    const int             T  = pb.batch.T;
    PreferenceConfig      c;
    c.loss            = PreferenceLoss::orpo;
    c.orpo_prompt_nll = false;
    for (float chosen : {-1e-9f, 0.0f, 1e-7f}) {  // 0 and +1e-7: what f32 log-softmax can round to
        SCOPED_TRACE(chosen);
        std::vector<float> logp(pb.batch.tokens(), 0.0f);
        logp[1] = logp[2] = chosen;
        logp[T + 1] = logp[T + 2] = logp[T + 3] = -0.5f;
        std::vector<float>      dlogp;
        const PreferenceMetrics m = preference_objective(c, pb, logp, {}, 1, 2, dlogp);
        EXPECT_TRUE(std::isfinite(m.loss));
        EXPECT_TRUE(std::isfinite(m.log_odds_ratio));
        for (float d : dlogp) {
            EXPECT_TRUE(std::isfinite(d));
        }
        if (chosen == -1e-9f) {
            // log_odds = (a+ - a-) - (log1mexp(a+) - log1mexp(a-)) with a+ = -1e-9 (as f32), a- = -0.5
            const double a     = (double) -1e-9f;
            const double lo    = (a + 0.5) - ((std::log(-a) + a / 2) - std::log(1 - std::exp(-0.5)));
            EXPECT_NEAR(m.log_odds_chosen, lo, 1e-9);
            EXPECT_NEAR(lo, 20.2905137, 1e-6);
            // d log_sigmoid(lo)/d a+ = sigmoid(-lo)/(1 - e^a+) ~ 1.5415; the odds term's share
            // per chosen token is -beta * that / 2, on top of the NLL's -1/2
            EXPECT_NEAR(dlogp[1], -0.1 * 1.54149408 / 2 - 0.5, 1e-6);
        } else {
            // p+ = 1: the chosen side's slope tends to q/(1-q), q = e^-0.5
            EXPECT_NEAR(dlogp[1], -0.1 * 1.54149408253679828 / 2 - 0.5, 1e-6);
            EXPECT_NEAR(m.loss, -(double) chosen, 1e-9);  // the NLL; the odds term is -0.1 log sigmoid(inf) = 0
        }
    }
}

// ---- names and errors -------------------------------------------------------------------------

TEST(ObjectivesInput, Names) {
    for (PreferenceLoss loss : {PreferenceLoss::sigmoid, PreferenceLoss::ipo, PreferenceLoss::hinge,
                                PreferenceLoss::robust, PreferenceLoss::simpo, PreferenceLoss::orpo}) {
        EXPECT_EQ(preference_loss_from_name(preference_loss_name(loss)), loss);
    }
    EXPECT_TRUE(needs_reference(PreferenceLoss::robust));
    EXPECT_FALSE(needs_reference(PreferenceLoss::simpo));
    EXPECT_FALSE(needs_reference(PreferenceLoss::orpo));
    expect_input_error([] { preference_loss_from_name("kto"); }, {"kto", "sigmoid"});
}

TEST(ObjectivesInput, BadInputs) {
    HandPair              h;
    const PreferenceBatch pb   = h.batch(false);
    const auto            logp = HandPair::logp(pb);
    std::vector<float>    dlogp;
    PreferenceConfig      c;
    expect_input_error([&] { preference_objective(c, pb, logp, {}, 1, 0, dlogp); }, {"reference"});
    expect_input_error([&] { preference_objective(c, pb, {0.0f}, h.ref, 1, 0, dlogp); }, {"log-probabilities"});
    expect_input_error([&] { preference_objective(c, pb, logp, h.ref, 0, 0, dlogp); }, {"pairs"});
    c.beta = 0;
    expect_input_error([&] { preference_objective(c, pb, logp, h.ref, 1, 0, dlogp); }, {"beta"});
    c.beta            = 0.1;
    c.label_smoothing = 0.5;
    expect_input_error([&] { preference_objective(c, pb, logp, h.ref, 1, 0, dlogp); }, {"label_smoothing"});
    c.label_smoothing = 0;
    c.loss            = PreferenceLoss::orpo;
    expect_input_error([&] { preference_objective(c, pb, logp, {}, 1, 2, dlogp); }, {"prompt"});  // no prompt targets
    c.orpo_prompt_nll = false;
    expect_input_error([&] { preference_objective(c, pb, logp, {}, 1, 0, dlogp); }, {"NLL tokens"});

    PreferenceExample empty = h.example;  // a one-token completion: nothing predicted after a 0-token prompt
    empty.prompt_ids.clear();
    empty.chosen_ids = {4};
    const PreferenceBatch epb = preference_batch({&empty}, false, kPad, 10);
    std::vector<float>    elp(epb.batch.tokens(), -1.0f);
    c.loss = PreferenceLoss::ipo;
    expect_input_error([&] { preference_objective(c, epb, elp, {0.0, 0.0}, 1, 0, dlogp); }, {"empty completion"});
    c.loss = PreferenceLoss::sigmoid;  // sums are fine
    EXPECT_NO_THROW(preference_objective(c, epb, elp, {0.0, 0.0}, 1, 0, dlogp));
    expect_input_error([] { preference_batch({}, false, kPad, 10); }, {"at least one"});
    expect_input_error([&] { sft_objective(pb.batch, logp, 0, dlogp); }, {"trained token"});
}

// ---- L1 on a hand-built adapter ---------------------------------------------------------------

// down_proj and gate_proj of a model with intermediate size 600 (gate's delta has 600 rows: three
// tiles), r = 2, alpha = 2 (s = 1); entries of A and B in {0, +-0.5, +-1, 2} so that s B A is
// exact in f32 and has many exact zeros. Statistics and subgradient against plain loops.
TEST(L1Penalty, HandBuiltAdapter) {
    ModelConfig mc;
    mc.hidden_size       = 8;
    mc.intermediate_size = 600;
    mc.num_layers        = 1;
    mc.num_heads         = 2;
    mc.num_kv_heads      = 2;
    mc.head_dim          = 4;
    mc.vocab_size        = 10;
    LoraConfig lc;
    lc.r       = 2;
    lc.alpha   = 2.0f;
    lc.targets = parse_lora_targets("gate_proj,down_proj");
    LoraAdapter adapter(mc, lc);
    const float values[] = {0.0f, 0.5f, -1.0f, 0.0f, 2.0f, -0.5f, 1.0f};
    for (size_t i = 0; i < adapter.params().size(); i++) {
        adapter.params()[i] = values[(i * 5 + i / 7) % 7];
    }
    const double lambda = 0.25, threshold = 1e-6;

    // plain loops: delta = B A, G = sign(delta); dB = lambda G A^T, dA = lambda B^T G
    double             l1 = 0;
    long               zeros = 0, total = 0;
    std::vector<float> want(adapter.params().size(), 0.0f);
    for (int t : {(int) TARGET_GATE, (int) TARGET_DOWN}) {
        const int     in = adapter.in_features(t), out = adapter.out_features(t), r = 2;
        const float * A = adapter.A(0, t);
        const float * B = adapter.B(0, t);
        for (int i = 0; i < out; i++) {
            for (int j = 0; j < in; j++) {
                double d = 0;
                for (int k = 0; k < r; k++) {
                    d += (double) B[i * r + k] * A[k * in + j];
                }
                l1 += std::fabs(d);
                zeros += std::fabs(d) < threshold;
                total++;
                const double g = (d > 0) - (d < 0);
                for (int k = 0; k < r; k++) {
                    want[adapter.offset_B(0, t) + i * r + k] += (float) (lambda * g * A[k * in + j]);
                    want[adapter.offset_A(0, t) + k * in + j] += (float) (lambda * B[i * r + k] * g);
                }
            }
        }
    }
    auto                     backend = make_backend(2);
    std::vector<float>       grads(adapter.params().size(), 0.0f);
    const DeltaStats         stats = l1_penalty(*backend, adapter, lambda, threshold, grads.data());
    EXPECT_EQ(stats.total, total);
    EXPECT_EQ(total, 2L * 600 * 8);
    EXPECT_EQ(stats.zeros, zeros);
    EXPECT_GT(zeros, total / 10);  // the pattern does make zeros
    EXPECT_LT(zeros, total);
    EXPECT_DOUBLE_EQ(stats.sparsity(), (double) zeros / total);
    EXPECT_DOUBLE_EQ(stats.l1, l1);
    EXPECT_LE(rel_error(grads.data(), want), 1e-6);

    // statistics only: no gradient buffer, nothing else changes
    const DeltaStats again = l1_penalty(*backend, adapter, lambda, threshold, nullptr);
    EXPECT_EQ(again.zeros, stats.zeros);
    EXPECT_EQ(again.l1, stats.l1);
    // gradients accumulate
    l1_penalty(*backend, adapter, lambda, threshold, grads.data());
    for (float & w : want) {
        w *= 2;
    }
    EXPECT_LE(rel_error(grads.data(), want), 1e-6);
}

TEST(L1Penalty, ZeroAdapter) {
    ModelConfig mc;
    mc.hidden_size = 8, mc.intermediate_size = 16, mc.num_layers = 2, mc.num_heads = 2, mc.num_kv_heads = 1;
    mc.head_dim = 4, mc.vocab_size = 10;
    LoraConfig lc;
    lc.targets.fill(true);
    LoraAdapter      adapter(mc, lc);  // A = B = 0
    auto             backend = make_backend(1);
    std::vector<float> grads(adapter.params().size(), 0.0f);
    const DeltaStats stats = l1_penalty(*backend, adapter, 1.0, 1e-5, grads.data());
    EXPECT_EQ(stats.l1, 0.0);
    EXPECT_EQ(stats.zeros, stats.total);
    EXPECT_EQ(stats.sparsity(), 1.0);
    EXPECT_EQ(grads, std::vector<float>(grads.size(), 0.0f));  // sign(0) = 0
}

}  // namespace
