// Optimizers over one flat parameter buffer (an adapter's), with PyTorch's semantics, and
// gradient clipping by global norm (torch.nn.utils.clip_grad_norm_).
//
//   adamw  torch.optim.AdamW: decoupled weight decay, bias correction
//            m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//            p = p (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
//   sgd    torch.optim.SGD with momentum (dampening 0, not Nesterov), coupled weight decay:
//            g = g + wd p;  buf = g at t = 1, else mu buf + g;  p = p - lr buf
//
// The state (moments, step count) can be saved and restored exactly, for checkpoints. Buffers
// are named as torch's state_dict names them: exp_avg, exp_avg_sq (adamw), momentum_buffer (sgd
// with momentum; plain SGD has none).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paft {

struct OptimizerConfig {
    std::string name         = "adamw";  // "adamw" | "sgd"
    double      beta1        = 0.9;      // adamw
    double      beta2        = 0.999;    // adamw
    double      eps          = 1e-8;     // adamw
    double      momentum     = 0.9;      // sgd
    double      weight_decay = 0.0;      // TrainingArguments' default
};

class Optimizer {
public:
    virtual ~Optimizer() = default;
    // One update of params[count] with grads[count] at learning rate `lr`.
    virtual void step(float * params, const float * grads, double lr) = 0;
    long         steps() const { return steps_; }
    // Named state buffers (each [count]) and the step count, for checkpoints.
    virtual std::map<std::string, std::vector<float>> state() const = 0;
    // Restores what state() returned; InputError naming the buffer when a buffer is missing or
    // has the wrong size.
    virtual void set_state(const std::map<std::string, std::vector<float>> & buffers, long steps) = 0;

protected:
    long steps_ = 0;
};

// InputError for an unknown name (naming the choices).
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig & config, size_t count);

// The global L2 norm of grads[count] (accumulated in double), and, if it exceeds max_norm > 0,
// grads scaled by max_norm / (norm + 1e-6) as torch does. Returns the norm before clipping.
double clip_grad_norm(float * grads, size_t count, double max_norm);

}  // namespace paft
