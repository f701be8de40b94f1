// The merge methods, one tensor at a time. A method sees flat float buffers only (the base
// tensor and each model's delta of it), so one definition serves deltas formed in memory from
// LoRA factors and, later, tensors streamed from disk. Methods live in a registry (name ->
// definition); adding one (slerp, dare_linear, breadcrumbs, ...) means one function and one
// table row in methods.cpp. docs/MERGING.md gives each method's formula.
#pragma once

#include "merge/merge.h"
#include "merge/sparsify.h"

#include <string>
#include <vector>

namespace paft {

// One tensor of the merge: n entries of the base and of each model's delta.
struct TensorInput {
    std::string                name;            // the Hugging Face tensor name (seeds DARE's masks)
    size_t                     n    = 0;
    const float *              base = nullptr;  // [n]
    std::vector<const float *> deltas;          // [models][n]; null = a zero delta (module not targeted)
};

// MergeOptions after validation, with the method's defaults applied and one weight and one
// density per model.
struct MergeSettings {
    std::string         method;
    std::vector<double> weights;
    std::vector<double> densities;
    bool                normalize = false;
    Rescale             rescale   = Rescale::none;
    double              lambda    = 1.0;
    uint64_t            seed      = 0;
};

// Buffers one thread reuses from tensor to tensor (sparsified copies of the deltas, magnitudes).
struct MergeScratch {
    std::vector<std::vector<float>> deltas;
    std::vector<float>              work;
};

using TensorMergeFn = void (*)(const TensorInput & in, const MergeSettings & settings, MergeScratch & scratch,
                               float * out);

struct MergeMethodDef {
    const char *  name;
    bool          default_normalize;
    Rescale       default_rescale;
    bool          sparsifies;   // uses densities and rescale
    bool          uses_lambda;  // linear has no lambda in mergekit
    TensorMergeFn merge;
};

const std::vector<MergeMethodDef> & merge_methods();
const MergeMethodDef *              find_merge_method(const std::string & name);  // null if unknown

// Validates `options` for `models` deltas (InputError naming the field) and applies defaults.
MergeSettings resolve_merge_options(const MergeOptions & options, size_t models);

// out[n] = the merged tensor. out may not alias the inputs. Deterministic: the result depends
// only on the inputs and settings (DARE's masks on seed, in.name and the model's index).
void merge_tensor(const MergeSettings & settings, const TensorInput & in, MergeScratch & scratch, float * out);

}  // namespace paft
