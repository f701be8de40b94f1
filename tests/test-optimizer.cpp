// Optimizers and gradient clipping against PyTorch (tools/reference/make_optimizer_cases.py):
// torch.optim.AdamW and torch.optim.SGD run in float32 on random vectors for 10 steps, with a
// learning rate that changes every step; torch.nn.utils.clip_grad_norm_ over several tensors; and
// five training steps of a LoRA adapter (loss, clip, AdamW, linear schedule with warmup) that
// torch ran in float64. Plus the state round trip and the errors of bad state.
#include "core/backend.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/transformer.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace paft;

namespace {

const std::string kDir = std::string(PAFT_TESTDATA) + "/optimizer";

struct Vectors {
    nlohmann::json cases = nlohmann::json::parse(read_file(kDir + "/vectors.json"));
    TensorStore    store = TensorStore::open_file(kDir + "/vectors.safetensors");

    std::vector<float> get(const std::string & name) const {
        std::vector<int64_t> shape;
        return store.read_f32_any(name, &shape);
    }
};

OptimizerConfig config_of(const nlohmann::json & c) {
    OptimizerConfig config;
    config.name         = c["optimizer"].get<std::string>();
    config.beta1        = c["beta1"].get<double>();
    config.beta2        = c["beta2"].get<double>();
    config.eps          = c["eps"].get<double>();
    config.momentum     = c["momentum"].get<double>();
    config.weight_decay = c["weight_decay"].get<double>();
    return config;
}

// Error of one step against torch: max |paft - torch| relative to the largest distance torch's
// parameters have moved from their start. A formula error shows up as a fraction of that
// distance; float32 rounding of the parameters (about 1e-7 of their size) as much less.
double step_error(const std::vector<float> & got, const std::vector<float> & want, const std::vector<float> & start) {
    double diff = 0, moved = 0;
    for (size_t i = 0; i < want.size(); i++) {
        diff  = nan_max(diff, std::fabs((double) got[i] - want[i]));
        moved = std::max(moved, std::fabs((double) want[i] - start[i]));
    }
    return diff / moved;
}

TEST(Optimizer, MatchesTorch) {
    Vectors v;
    ASSERT_EQ(v.cases["optimizers"].size(), 7u);
    for (const auto & c : v.cases["optimizers"]) {
        const std::string        name   = c["name"].get<std::string>();
        const std::vector<float> start  = v.get(name + ".params0");
        std::vector<float>       params = start;
        auto                     opt    = make_optimizer(config_of(c), params.size());
        const auto               lrs    = c["lrs"].get<std::vector<double>>();
        double                   worst = 0, worst_abs = 0;
        for (size_t t = 1; t <= lrs.size(); t++) {
            const std::vector<float> grad = v.get(name + ".grad." + std::to_string(t));
            const std::vector<float> want = v.get(name + ".params." + std::to_string(t));
            opt->step(params.data(), grad.data(), lrs[t - 1]);
            const double err = step_error(params, want, start);
            EXPECT_LE(err, 1e-4) << name << " step " << t;
            worst = nan_max(worst, err);
            for (size_t i = 0; i < want.size(); i++) {
                worst_abs = nan_max(worst_abs, std::fabs((double) params[i] - want[i]));
            }
        }
        EXPECT_EQ(opt->steps(), (long) lrs.size());
        // The state: torch's buffer names, and values.
        const auto state = opt->state();
        size_t     torch_buffers = 0;
        for (const std::string & key : v.store.names()) {
            torch_buffers += key.rfind(name + ".state.", 0) == 0;
        }
        EXPECT_EQ(state.size(), torch_buffers) << name;
        double state_err = 0;
        for (const auto & [buffer, values] : state) {
            const double err = rel_error(values.data(), v.get(name + ".state." + buffer));
            EXPECT_LE(err, 1e-5) << name << " " << buffer;
            state_err = nan_max(state_err, err);
        }
        std::printf("%-20s max error %.2e of the distance moved (%.2e absolute), state %.2e\n", name.c_str(), worst,
                    worst_abs, state_err);
    }
}

// One step worked by hand: p = 1, g = 0.5, lr 0.1, wd 0.1, betas (0.9, 0.999), eps 1e-8:
// m = 0.05, v = 0.00025, m / (1 - 0.9) = 0.5, sqrt(v / (1 - 0.999)) = 0.5,
// p = 1 (1 - 0.01) - 0.1 * 0.5 / (0.5 + 1e-8).
TEST(Optimizer, AdamWFirstStepByHand) {
    OptimizerConfig config;
    config.weight_decay = 0.1;
    auto  opt = make_optimizer(config, 1);
    float p = 1.0f, g = 0.5f;
    opt->step(&p, &g, 0.1);
    EXPECT_NEAR(p, 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-7);
    const auto state = opt->state();
    EXPECT_NEAR(state.at("exp_avg")[0], 0.05, 1e-8);
    EXPECT_NEAR(state.at("exp_avg_sq")[0], 0.00025, 1e-10);
}

// SGD by hand: p = 2, g = 1, lr 0.1, momentum 0.5, wd 0.1: d = 1 + 0.2 = 1.2, buf = 1.2,
// p = 2 - 0.12 = 1.88; then g = 1 again: d = 1 + 0.188 = 1.188, buf = 0.6 + 1.188 = 1.788,
// p = 1.88 - 0.1788 = 1.7012.
TEST(Optimizer, SgdByHand) {
    OptimizerConfig config;
    config.name         = "sgd";
    config.momentum     = 0.5;
    config.weight_decay = 0.1;
    auto  opt = make_optimizer(config, 1);
    float p = 2.0f, g = 1.0f;
    opt->step(&p, &g, 0.1);
    EXPECT_NEAR(p, 1.88, 1e-6);
    opt->step(&p, &g, 0.1);
    EXPECT_NEAR(p, 1.7012, 1e-6);
    EXPECT_NEAR(opt->state().at("momentum_buffer")[0], 1.788, 1e-6);
    // Plain SGD keeps no buffer.
    config.momentum = 0.0;
    auto plain      = make_optimizer(config, 1);
    p               = 2.0f;
    plain->step(&p, &g, 0.1);
    EXPECT_NEAR(p, 1.88, 1e-6);
    EXPECT_TRUE(plain->state().empty());
}

// Three steps, the state moved into a fresh optimizer, two more steps: bit-identical to five
// uninterrupted steps.
TEST(Optimizer, StateRoundTripIsExact) {
    Vectors v;
    for (const char * name : {"adamw_betas_decay", "sgd_momentum_decay", "sgd_plain"}) {
        const nlohmann::json * c = nullptr;
        for (const auto & entry : v.cases["optimizers"]) {
            c = entry["name"] == name ? &entry : c;
        }
        ASSERT_NE(c, nullptr) << name;
        const OptimizerConfig    config = config_of(*c);
        const auto               lrs    = (*c)["lrs"].get<std::vector<double>>();
        const std::vector<float> start  = v.get(std::string(name) + ".params0");
        std::vector<std::vector<float>> grads;
        for (int t = 1; t <= 5; t++) {
            grads.push_back(v.get(std::string(name) + ".grad." + std::to_string(t)));
        }
        std::vector<float> straight = start, resumed = start;
        auto               a        = make_optimizer(config, start.size());
        for (int t = 0; t < 5; t++) {
            a->step(straight.data(), grads[t].data(), lrs[t]);
        }
        auto first = make_optimizer(config, start.size());
        for (int t = 0; t < 3; t++) {
            first->step(resumed.data(), grads[t].data(), lrs[t]);
        }
        auto second = make_optimizer(config, start.size());
        second->set_state(first->state(), first->steps());
        EXPECT_EQ(second->steps(), 3);
        for (int t = 3; t < 5; t++) {
            second->step(resumed.data(), grads[t].data(), lrs[t]);
        }
        EXPECT_EQ(0, std::memcmp(straight.data(), resumed.data(), start.size() * sizeof(float))) << name;
        EXPECT_EQ(a->state(), second->state()) << name;
        EXPECT_EQ(a->steps(), second->steps()) << name;
    }
}

TEST(Optimizer, BadStateIsInputError) {
    OptimizerConfig adamw;
    auto            opt = make_optimizer(adamw, 10);
    auto            good = opt->state();
    auto            state = good;
    state["exp_avg_sq"].resize(9);
    expect_input_error([&] { opt->set_state(state, 1); }, {"exp_avg_sq", "9", "10"});
    state = good;
    state.erase("exp_avg");
    expect_input_error([&] { opt->set_state(state, 1); }, {"exp_avg", "missing"});
    state                    = good;
    state["momentum_buffer"] = std::vector<float>(10);
    expect_input_error([&] { opt->set_state(state, 1); }, {"momentum_buffer"});
    expect_input_error([&] { opt->set_state(good, -1); }, {"-1"});

    OptimizerConfig sgd;
    sgd.name = "sgd";
    auto momentum = make_optimizer(sgd, 10);
    expect_input_error([&] { momentum->set_state({{"momentum_buffer", std::vector<float>(11)}}, 2); },
                       {"momentum_buffer", "11", "10"});
    expect_input_error([&] { momentum->set_state({}, 2); }, {"momentum_buffer", "missing"});
    sgd.momentum = 0.0;
    auto plain   = make_optimizer(sgd, 10);
    plain->set_state({}, 4);
    EXPECT_EQ(plain->steps(), 4);
    expect_input_error([&] { plain->set_state({{"momentum_buffer", std::vector<float>(10)}}, 4); },
                       {"momentum_buffer"});
}

TEST(Optimizer, BadConfigIsInputError) {
    OptimizerConfig config;
    config.name = "adam";
    expect_input_error([&] { make_optimizer(config, 1); }, {"'adam'", "adamw, sgd"});
    config       = OptimizerConfig{};
    config.beta1 = 1.0;
    expect_input_error([&] { make_optimizer(config, 1); }, {"adam_beta1"});
    config              = OptimizerConfig{};
    config.weight_decay = -0.1;
    expect_input_error([&] { make_optimizer(config, 1); }, {"weight_decay"});
    config          = OptimizerConfig{};
    config.name     = "sgd";
    config.momentum = -0.5;
    expect_input_error([&] { make_optimizer(config, 1); }, {"momentum"});
}

TEST(ClipGradNorm, MatchesTorch) {
    Vectors v;
    for (const auto & c : v.cases["clips"]) {
        const std::string  name    = c["name"].get<std::string>();
        std::vector<float> grads   = v.get("clip." + name + ".grads");
        const auto         clipped = v.get("clip." + name + ".clipped");
        const double       want    = c["norm"].get<double>();
        const double       norm    = clip_grad_norm(grads.data(), grads.size(), c["max_norm"].get<double>());
        const double       norm_err = std::fabs(norm - want) / want;
        EXPECT_LE(norm_err, 1e-13) << name;
        const double err = rel_error(grads.data(), clipped);
        EXPECT_LE(err, 1e-6) << name;
        std::printf("clip %-10s norm %.6f (max_norm %g): norm error %.2e, clipped gradients %.2e\n", name.c_str(),
                    norm, c["max_norm"].get<double>(), norm_err, err);
    }
}

// By hand: |(3, 4)| = 5; clipped to 1 they become (3, 4) / (5 + 1e-6). Under the limit, or with
// max_norm 0 (no clipping), they stay as they are.
TEST(ClipGradNorm, ByHand) {
    std::vector<float> g = {3.0f, 4.0f};
    EXPECT_EQ(clip_grad_norm(g.data(), g.size(), 1.0), 5.0);
    EXPECT_FLOAT_EQ(g[0], (float) (3.0 / (5.0 + 1e-6)));
    EXPECT_FLOAT_EQ(g[1], (float) (4.0 / (5.0 + 1e-6)));
    g = {3.0f, 4.0f};
    EXPECT_EQ(clip_grad_norm(g.data(), g.size(), 10.0), 5.0);
    EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));
    EXPECT_EQ(clip_grad_norm(g.data(), g.size(), 0.0), 5.0);
    EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));
    std::vector<float> zero(5, 0.0f);
    EXPECT_EQ(clip_grad_norm(zero.data(), zero.size(), 1.0), 0.0);
    EXPECT_EQ(zero, std::vector<float>(5, 0.0f));
    EXPECT_EQ(clip_grad_norm(nullptr, 0, 1.0), 0.0);
}

// The norm is summed in fixed chunks combined in order: the same bits for any thread count.
TEST(ClipGradNorm, IndependentOfThreadCount) {
    Vectors                  v;
    const std::vector<float> grads = v.get("clip.clipped.grads");
    const int                saved = omp_get_max_threads();
    std::vector<double>      norms;
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3, 8}) {
        omp_set_num_threads(threads);
        std::vector<float> g = grads;
        norms.push_back(clip_grad_norm(g.data(), g.size(), 1.0));
        results.push_back(g);
    }
    omp_set_num_threads(saved);
    for (size_t i = 1; i < norms.size(); i++) {
        EXPECT_EQ(0, std::memcmp(&norms[0], &norms[i], sizeof(double))) << i;
        EXPECT_EQ(results[0], results[i]) << i;
    }
}

std::vector<int32_t> flatten(const nlohmann::json & rows) {
    std::vector<int32_t> out;
    for (const auto & row : rows) {
        for (const auto & x : row) {
            out.push_back(x.get<int32_t>());
        }
    }
    return out;
}

// Five training steps as a trainer takes them: loss (mean token cross-entropy), backward,
// clip_grad_norm, AdamW at the rate of a linear schedule with warmup (the first step at rate 0).
// Against torch in float64: the loss before each step, the norm before clipping, the final adapter.
TEST(Optimizer, AdamWTrainingStepsMatchTorch) {
    const std::string d        = kDir + "/trajectory";
    const auto        hp       = nlohmann::json::parse(read_file(d + "/trajectory.json"));
    auto              model    = Model::load(d + "/model");
    const int         V        = model->config().vocab_size;
    LoraAdapter       adapter  = LoraAdapter::load(d + "/adapter", model->config());
    TensorStore       expected = TensorStore::open_file(d + "/expected.safetensors");
    std::vector<int64_t> shape;
    const auto        want_losses = expected.read_f32_any("losses", &shape);
    const auto        want_norms  = expected.read_f32_any("grad_norms", &shape);

    auto  j = nlohmann::json::parse(read_file(d + "/batch.json"));
    int   B = (int) j["input_ids"].size(), T = (int) j["input_ids"][0].size();
    Batch batch = batch_from_arrays(B, T, flatten(j["input_ids"]), flatten(j["attention_mask"]),
                                    flatten(j["position_ids"]), flatten(j["labels"]), V);
    ASSERT_LT(batch.target_count(), B * (T - 1));  // some labels are -100

    OptimizerConfig config;
    config.beta1        = hp["beta1"].get<double>();
    config.beta2        = hp["beta2"].get<double>();
    config.eps          = hp["eps"].get<double>();
    config.weight_decay = hp["weight_decay"].get<double>();
    auto                     opt   = make_optimizer(config, adapter.params().size());
    const std::vector<float> start = adapter.params();
    Schedule                 schedule;
    schedule.type         = schedule_from_name(hp["schedule"].get<std::string>());
    schedule.base_lr      = hp["lr"].get<double>();
    schedule.warmup_steps = hp["warmup_steps"].get<long>();
    schedule.total_steps  = hp["total_steps"].get<long>();
    const double max_norm = hp["max_grad_norm"].get<double>();

    auto                     backend = make_backend(2);
    Transformer              t(*backend, model);
    const std::vector<float> dlogp = mean_nll_gradient(batch);
    const long               steps = hp["steps"].get<long>();
    ASSERT_EQ(want_losses.size(), (size_t) steps);
    double loss_err = 0, norm_err = 0, adapter_err = 0;
    for (long step = 0; step < steps; step++) {
        adapter.zero_grads();
        const auto & logp = t.forward_backward(batch, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
        double       loss = 0;
        for (float lp : logp) {
            loss -= lp;
        }
        const float got_loss = (float) (loss / batch.target_count());
        const float got_norm = (float) clip_grad_norm(adapter.grads().data(), adapter.grads().size(), max_norm);
        ASSERT_GT(got_norm, max_norm);  // every step clips
        loss_err = nan_max(loss_err, rel_error(&got_loss, {want_losses[step]}));
        norm_err = nan_max(norm_err, rel_error(&got_norm, {want_norms[step]}));
        EXPECT_LE(rel_error(&got_loss, {want_losses[step]}), 1e-4) << "step " << step;
        EXPECT_LE(rel_error(&got_norm, {want_norms[step]}), 1e-4) << "step " << step;
        opt->step(adapter.params().data(), adapter.grads().data(), schedule.lr(step));
    }
    EXPECT_GT(std::fabs(want_losses.front() - want_losses.back()), 0.1 * want_losses.front());  // it trained
    // The final adapter: each tensor against torch's (relative to its largest entry), and all of
    // it relative to the largest distance torch moved an entry (the part the optimizer decides).
    int    checked = 0;
    double diff = 0, moved = 0;
    for (int l = 0; l < model->config().num_layers; l++) {
        for (int target = 0; target < TARGET_COUNT; target++) {
            for (char which : {'A', 'B'}) {
                if (!adapter.has(l, target)) {
                    continue;
                }
                const std::string        key  = adapter.peft_key(l, target, which);
                const size_t             off  = which == 'A' ? adapter.offset_A(l, target) : adapter.offset_B(l, target);
                const std::vector<float> want = expected.read_f32_any("final." + key, &shape);
                const double             err  = rel_error(adapter.params().data() + off, want);
                EXPECT_LE(err, 1e-4) << key;
                adapter_err = nan_max(adapter_err, err);
                for (size_t i = 0; i < want.size(); i++) {
                    diff  = nan_max(diff, std::fabs((double) adapter.params()[off + i] - want[i]));
                    moved = std::max(moved, std::fabs((double) want[i] - start[off + i]));
                }
                checked++;
            }
        }
    }
    EXPECT_EQ(checked, 2 * 2 * TARGET_COUNT);
    EXPECT_LE(diff / moved, 1e-3);
    std::printf("training steps: max relative error of losses %.2e, grad norms %.2e, final adapter %.2e "
                "(%.2e of the largest distance moved, %.3g)\n",
                loss_err, norm_err, adapter_err, diff / moved, moved);
}

}  // namespace
