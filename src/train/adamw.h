// AdamW over one flat parameter buffer (PyTorch's torch.optim.AdamW formula, decoupled decay):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p = p (1 - lr wd) - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
#pragma once

#include <cstddef>
#include <vector>

namespace paft {

struct AdamWConfig {
    float lr           = 1e-4f;
    float beta1        = 0.9f;
    float beta2        = 0.999f;
    float eps          = 1e-8f;
    float weight_decay = 0.01f;  // torch.optim.AdamW's default
};

class AdamW {
public:
    AdamW(size_t count, const AdamWConfig & config);
    // One update of params[count] with grads[count]; `lr` overrides the configured rate (schedules).
    void step(float * params, const float * grads, float lr);
    void step(float * params, const float * grads) { step(params, grads, config_.lr); }
    long steps() const { return t_; }

private:
    AdamWConfig        config_;
    std::vector<float> m_, v_;
    long               t_ = 0;
};

}  // namespace paft
