// Merging task deltas into a base model, as mergekit's methods define them, one tensor at a time.
// For LoRA adapters the delta of a targeted weight is s * B * A ([out, in]); every other tensor
// has no delta (a zero delta).
//
// merge_adapters runs any method of the registry (merge/methods.h) whose parameters MergeOptions
// can express; docs/MERGING.md gives each method's exact math. The PAFT defaults:
//   linear            sum_i w_i (base + d_i) / sum_i w_i          (normalize: true)
//   task_arithmetic   base + lambda * sum_i w_i d_i                (normalize: false)
//   ties              trim each d_i to its top density share by magnitude, elect the sign of
//                     sum_i w_i d_i per entry, keep the w_i d_i that agree, and divide by the
//                     agreeing weights' sum (normalize: true); base + lambda * that
//   dare_ties         as ties, with DARE's random drop (keep p = density) instead of the
//                     magnitude trim, survivors rescaled to the delta's L1 norm (rescale: l1),
//                     and no division (normalize: false), as mergekit does today
#pragma once

#include "merge/methods.h"
#include "model/lora.h"
#include "model/model.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paft {

struct MergeOptions {
    std::string         method = "ties";
    std::vector<double> weights;    // per delta; empty = 1 each
    std::vector<double> densities;  // per delta (ties, dare_ties); empty = 1 each
    int                 normalize = -1;  // -1 = the method's default, 0 = false, 1 = true
    double              lambda    = 1.0;
    uint64_t            seed      = 42;  // dare_ties's drop masks
    // How a sparsified delta is rescaled (ties, dare_ties): "" = the method's default (dare_ties:
    // "l1", ties: "none"), "none", "l1" (match the delta's L1 norm, mergekit), "density"
    // (divide by density: the DARE paper, PEFT, mergekit before 2025).
    std::string rescale;
};

// The methods merge_adapters can run: every registered method with no required global
// parameter (slerp needs t, which MergeOptions has no field for).
std::vector<std::string> merge_method_names();
void                     validate(const MergeOptions & options, size_t deltas);  // InputError naming the field

// options as the registry's parameters for `deltas` models: weights -> weight (1 each when
// empty), densities -> density, normalize, lambda and rescale where set. A field the method does
// not take (densities for linear, lambda != 1 for slerp, ...) is an InputError naming it.
struct ResolvedMerge {
    const MergeMethodDef * method = nullptr;
    TensorParams           params;
};
ResolvedMerge resolve_merge_options(const MergeOptions & options, size_t deltas);

// A new model: base with the adapters' deltas merged by options.method. Adapters must be for
// `base`'s shapes; any subset of modules may be targeted by each.
std::shared_ptr<Model> merge_adapters(const Model & base, const std::vector<const LoraAdapter *> & adapters,
                                      const MergeOptions & options);

// base += weight * s * B * A for every module the adapter targets (PEFT's merge_and_unload).
void merge_adapter_into(Model & base, const LoraAdapter & adapter, double weight = 1.0);

}  // namespace paft
