// Whole-model magnitude top-k (topk_scope: model, the TIES paper's trim): for each model, the
// k = int(density * N) largest |d| over all its N delta entries (zero deltas included), ranked
// as every magnitude selection is (larger first, equal magnitudes in (tensor order, flat
// index) order). Breadcrumbs' band (drop the int(gamma * N) largest, keep the next k) is the
// same selection made twice.
//
// O(N) time and O(threads * 256 KiB) memory: each model's deltas are streamed two or three times
// through a callback, never held together. Pass 1 counts the magnitudes' float bit patterns by
// their top 16 bits, pass 2 counts the low 16 bits inside the bin holding the k-th largest (so the
// threshold is exact), and pass 3, only when some entries equal to the threshold are kept and
// some not, counts those per tensor to share the kept ones out in tensor order.
#pragma once

#include "merge/methods.h"

#include <cstddef>
#include <functional>
#include <vector>

namespace paft {

// Model `model`'s delta of tensor `tensor`: numel[tensor] floats, possibly in `buffer` (the
// callee may resize it), or null for a zero delta. Called from several threads at once; it must
// return the same values merge_tensor will see.
using DeltaSource = std::function<const float *(size_t tensor, size_t model, std::vector<float> & buffer)>;

// cuts[tensor][model] for TensorParams::cuts. density and gamma: one per model, gamma 0 for ties
// (breadcrumbs: its gamma). A model with density >= 1 keeps everything (and is not read).
// InputError when a density keeps no entry. The result does not depend on the thread count.
std::vector<std::vector<ModelCut>> model_topk_cuts(const std::vector<size_t> & numel, const std::vector<double> & density,
                                                   const std::vector<double> & gamma, const DeltaSource & delta);

}  // namespace paft
