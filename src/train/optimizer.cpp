// The updates follow torch's order of operations (torch.optim.AdamW / SGD, single-tensor path):
// the hyper-parameters are combined in double, as Python does, and rounded to float once, as
// torch does when it applies a Python scalar to a float32 tensor; each element is then updated in
// float32, one rounding per tensor operation of torch's. Where torch calls add(x, alpha=a) or
// addcmul(x, y, value=a), its vectorised CPU kernels compute fma(x, a, self) and fma(a x, y, self)
// (the sum rounded once), so std::fma stands there, and this file is compiled without
// contraction (-ffp-contract=off) so that no other product is fused. The results then equal
// torch's (AVX2 / AVX-512 kernels) bit for bit. Elements are independent: the static OpenMP
// split changes no result.
#include "train/optimizer.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace paft {

namespace {

// The state buffer `name` of `buffers`, checked to hold `count` floats.
const std::vector<float> & state_buffer(const std::map<std::string, std::vector<float>> & buffers,
                                        const std::string & name, size_t count) {
    auto it = buffers.find(name);
    if (it == buffers.end()) {
        throw InputError(fmt::format("optimizer state: buffer '{}' is missing", name));
    }
    if (it->second.size() != count) {
        throw InputError(fmt::format("optimizer state: buffer '{}' holds {} values, expected {}", name,
                                     it->second.size(), count));
    }
    return it->second;
}

// InputError for a buffer that is not one of `expected` (the state of another optimizer), or a
// negative step count.
void check_state_names(const std::map<std::string, std::vector<float>> & buffers,
                       const std::vector<std::string> & expected, long steps) {
    for (const auto & [name, values] : buffers) {
        if (std::find(expected.begin(), expected.end(), name) == expected.end()) {
            throw InputError(fmt::format("optimizer state: unexpected buffer '{}'", name));
        }
    }
    if (steps < 0) {
        throw InputError(fmt::format("optimizer state: negative step count {}", steps));
    }
}

class AdamW final : public Optimizer {
public:
    AdamW(const OptimizerConfig & config, size_t count) : config_(config), m_(count, 0.0f), v_(count, 0.0f) {}

    void step(float * params, const float * grads, double lr) override {
        steps_++;
        const double bias1 = 1.0 - std::pow(config_.beta1, (double) steps_);
        const double bias2 = 1.0 - std::pow(config_.beta2, (double) steps_);
        const float  decay = (float) (1.0 - lr * config_.weight_decay);  // decoupled: p (1 - lr wd)
        const float  b1 = (float) config_.beta1, c1 = (float) (1.0 - config_.beta1);
        const float  b2 = (float) config_.beta2, c2 = (float) (1.0 - config_.beta2);
        const float  step_size  = (float) (lr / bias1);          // lr / (1 - b1^t)
        const float  bias2_sqrt = (float) std::sqrt(bias2);      // sqrt(1 - b2^t)
        const float  eps        = (float) config_.eps;
        const size_t n          = m_.size();
        float *      m = m_.data();
        float *      v = v_.data();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float g = grads[i];
            const float p = params[i] * decay;
            m[i]          = std::fma(g, c1, b1 * m[i]);      // m.mul_(b1).add_(g, alpha=1-b1)
            v[i]          = std::fma(c2 * g, g, b2 * v[i]);  // v.mul_(b2).addcmul_(g, g, value=1-b2)
            // eps is added after the bias correction of sqrt(v), as torch does.
            const float denom = std::sqrt(v[i]) / bias2_sqrt + eps;
            params[i]         = p + (-step_size * m[i]) / denom;  // p.addcdiv_(m, denom, value=-step_size)
        }
    }

    std::map<std::string, std::vector<float>> state() const override {
        return {{"exp_avg", m_}, {"exp_avg_sq", v_}};
    }

    void set_state(const std::map<std::string, std::vector<float>> & buffers, long steps) override {
        check_state_names(buffers, {"exp_avg", "exp_avg_sq"}, steps);
        const auto & m = state_buffer(buffers, "exp_avg", m_.size());
        const auto & v = state_buffer(buffers, "exp_avg_sq", v_.size());
        m_     = m;
        v_     = v;
        steps_ = steps;
    }

private:
    OptimizerConfig    config_;
    std::vector<float> m_, v_;  // [count] first and second moments
};

class Sgd final : public Optimizer {
public:
    Sgd(const OptimizerConfig & config, size_t count)
        : config_(config), count_(count), buf_(config.momentum != 0.0 ? count : 0, 0.0f) {}

    void step(float * params, const float * grads, double lr) override {
        // torch creates the momentum buffer on the first step as a copy of the (decayed) gradient.
        const bool   first    = steps_ == 0;
        const bool   momentum = config_.momentum != 0.0;
        const float  wd       = (float) config_.weight_decay;
        const float  mu       = (float) config_.momentum;
        const float  rate     = (float) lr;
        const size_t n        = count_;
        float *      buf      = buf_.data();
        steps_++;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float d = grads[i];
            if (wd != 0.0f) {
                d = std::fma(params[i], wd, d);  // coupled (L2) decay: g.add(p, alpha=wd)
            }
            if (momentum) {
                buf[i] = first ? d : mu * buf[i] + d;  // buf.mul_(mu).add_(d), dampening 0
                d      = buf[i];
            }
            params[i] = std::fma(d, -rate, params[i]);  // p.add_(d, alpha=-lr)
        }
    }

    // Without momentum there is no state but the step count (torch keeps momentum_buffer None).
    std::map<std::string, std::vector<float>> state() const override {
        if (buf_.empty()) {
            return {};
        }
        return {{"momentum_buffer", buf_}};
    }

    void set_state(const std::map<std::string, std::vector<float>> & buffers, long steps) override {
        if (config_.momentum == 0.0) {
            check_state_names(buffers, {}, steps);
        } else {
            check_state_names(buffers, {"momentum_buffer"}, steps);
            buf_ = state_buffer(buffers, "momentum_buffer", count_);
        }
        steps_ = steps;
    }

private:
    OptimizerConfig    config_;
    size_t             count_;
    std::vector<float> buf_;  // [count] momentum buffer; empty without momentum
};

// InputError naming the option unless lo <= value (< hi when `open_hi`, else <= hi), as torch's
// constructors check them.
void check_range(const char * option, double value, double lo, double hi, bool open_hi) {
    const bool ok = value >= lo && (open_hi ? value < hi : value <= hi);
    if (!ok) {
        throw InputError(fmt::format("{} {} is out of range [{}, {}{}", option, value, lo, hi, open_hi ? ")" : "]"));
    }
}

// Elements per partial sum of the gradient norm. Fixed chunks, summed in order, give the same
// norm for any thread count.
constexpr size_t kNormChunk = 8192;

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig & config, size_t count) {
    const double inf = INFINITY;
    check_range("weight_decay", config.weight_decay, 0.0, inf, false);
    if (config.name == "adamw") {
        check_range("adam_beta1", config.beta1, 0.0, 1.0, true);
        check_range("adam_beta2", config.beta2, 0.0, 1.0, true);
        check_range("adam_epsilon", config.eps, 0.0, inf, false);
        return std::make_unique<AdamW>(config, count);
    }
    if (config.name == "sgd") {
        check_range("momentum", config.momentum, 0.0, inf, false);
        return std::make_unique<Sgd>(config, count);
    }
    throw InputError(fmt::format("unknown optimizer '{}' (expected one of adamw, sgd)", config.name));
}

double clip_grad_norm(float * grads, size_t count, double max_norm) {
    const size_t        chunks = (count + kNormChunk - 1) / kNormChunk;
    std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        const size_t end = std::min(count, (c + 1) * kNormChunk);
        double       sum = 0.0;
        for (size_t i = c * kNormChunk; i < end; i++) {
            sum += (double) grads[i] * grads[i];
        }
        partial[c] = sum;
    }
    double sum = 0.0;
    for (double s : partial) {
        sum += s;
    }
    const double norm = std::sqrt(sum);
    // torch multiplies by min(1, coef); a factor of 1 changes nothing, so only smaller ones are
    // applied. A NaN norm gives a NaN coef, which is not < 1: the gradients are left as they are.
    const double coef = max_norm / (norm + 1e-6);
    if (max_norm > 0 && coef < 1.0) {
        const float scale = (float) coef;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < count; i++) {
            grads[i] *= scale;
        }
    }
    return norm;
}

}  // namespace paft
