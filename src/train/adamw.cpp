#include "train/adamw.h"

#include <cmath>

namespace paft {

AdamW::AdamW(size_t count, const AdamWConfig & config) : config_(config), m_(count, 0.0f), v_(count, 0.0f) {}

void AdamW::step(float * params, const float * grads, float lr) {
    t_++;
    const float  b1 = config_.beta1, b2 = config_.beta2;
    const float  bias1 = 1.0f - (float) std::pow((double) b1, (double) t_);
    const float  bias2 = 1.0f - (float) std::pow((double) b2, (double) t_);
    const float  decay = 1.0f - lr * config_.weight_decay;
    const size_t n     = m_.size();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        m_[i]   = b1 * m_[i] + (1.0f - b1) * g;
        v_[i]   = b2 * v_[i] + (1.0f - b2) * g * g;
        float mhat = m_[i] / bias1;
        float vhat = v_[i] / bias2;
        params[i]  = params[i] * decay - lr * mhat / (std::sqrt(vhat) + config_.eps);
    }
}

}  // namespace paft
