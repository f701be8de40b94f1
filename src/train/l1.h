// The PAFT paper's sparsity penalty on an SFT adapter: lambda * sum over adapted modules of
// ||s * B * A||_1 (delta W = s B A, [out, in]), its subgradient, and the delta's sparsity.
//
// With G = s * sign(s B A) (sign(0) = 0, as torch.sign), d/dB = lambda * G A^T [out, r] and
// d/dA = lambda * B^T G [r, in]. Each module's delta is formed in tiles of rows, never whole.
// Modules run in parallel (OpenMP); the result does not depend on the thread count.
#pragma once

#include "core/backend.h"
#include "model/lora.h"

namespace paft {

struct DeltaStats {
    double l1     = 0.0;  // sum of |s B A| over every adapted module
    long   zeros  = 0;    // entries with |s B A| < threshold
    long   total  = 0;    // entries of every delta
    double sparsity() const { return total ? (double) zeros / (double) total : 0.0; }
};

// Statistics of the adapter's deltas; if `grads` (the adapter's gradient layout) is not null,
// adds lambda times the penalty's subgradient to it.
DeltaStats l1_penalty(Backend & backend, const LoraAdapter & adapter, double lambda, double threshold,
                      float * grads);

}  // namespace paft
