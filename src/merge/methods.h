// The merge methods, one tensor at a time, behind a registry (name -> definition), as mergekit
// defines them. A method sees flat float buffers only (the base tensor, each model's delta and,
// where a method needs them, the models' own tensors), so one definition serves deltas formed from
// LoRA factors and tensors streamed from disk. docs/MERGING.md gives each method's exact math.
//
// Parameters: each method declares the parameters it takes (ParamSpec), global or per model, with
// mergekit's defaults. The config layer (merge/config.h) evaluates the user's settings for each
// tensor (scalars, gradients over layers, name filters) and resolve_tensor_params turns them into
// a TensorParams, refusing values out of range with an InputError naming the parameter.
#pragma once

#include "merge/sparsify.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace paft {

// One value of a parameter as the user wrote it (YAML scalar): a number, true/false, or a word.
struct ParamScalar {
    enum class Kind { number, boolean, text };
    Kind        kind    = Kind::number;
    double      number  = 0.0;
    bool        boolean = false;
    std::string text;
};

enum class Consensus { none, sum, count };  // sign election: sign of sum_i w_i d_i (mergekit), or of sum_i sign(w_i d_i)
enum class Divisor { weights, count };      // normalize divides by the agreeing weights' sum (mergekit) or their count (TIES paper, PEFT)
enum class TopkScope { tensor, row, model };  // where magnitude top-k is taken: per tensor (mergekit), per row, whole model (TIES paper)

// Whole-model top-k (TopkScope::model): keep |d| > threshold, and, of the entries with
// |d| == threshold, the first `equal_kept` of this tensor in flat index order. Breadcrumbs also
// drops the model's largest share: of the kept, |d| > drop_threshold and the first `drop_equal`
// with |d| == drop_threshold (the defaults drop nothing). model_topk.h computes the cuts.
struct ModelCut {
    float  threshold      = 0.0f;
    size_t equal_kept     = 0;
    float  drop_threshold = INFINITY;
    size_t drop_equal     = 0;
};

// The per-model parameters of one tensor (after defaults).
struct ModelParams {
    double weight  = 1.0;
    double density = 1.0;
    double gamma   = 0.01;  // breadcrumbs: share of largest magnitudes dropped
    double epsilon = 0.15;  // della: half-width of the keep-probability range
};

// Everything a method needs to merge one tensor, after defaults and validation.
struct TensorParams {
    std::vector<ModelParams> models;  // one per model, in the merge's model order
    double                   lambda      = 1.0;
    double                   t           = 0.5;  // slerp
    bool                     normalize   = false;
    Rescale                  rescale     = Rescale::none;
    Consensus                consensus   = Consensus::none;
    Divisor                  divisor     = Divisor::weights;
    TopkScope                topk        = TopkScope::tensor;
    bool                     filter_wise = false;  // model_stock: one t per row
    uint64_t                 seed        = 42;     // DARE / DELLA masks
    std::vector<ModelCut>    cuts;                 // TopkScope::model: one per model, filled by the engine
};

// One tensor of the merge: n entries, [rows, cols] (a 1-D tensor is one row; n = rows * cols).
// Task vectors (the task-arithmetic family, model_stock's angles) come from `deltas`; where a
// delta is null but the model's tensor is given, from models[i] - base (rounded to f32, as
// mergekit forms deltas). Whole models (linear, slerp, model_stock's mean) come from value().
// `models` may be empty (all null).
struct TensorInput {
    std::string                name;  // the Hugging Face tensor name (seeds the random masks)
    size_t                     rows = 1, cols = 0, n = 0;
    const float *              base = nullptr;  // [n]; null when the merge has no base model (linear)
    std::vector<const float *> deltas;          // [models][n]: model i minus base; null = a zero delta
    std::vector<const float *> models;          // [models][n]: model i's tensor; null = base + delta_i
    // Entry j of model i's own tensor, in double.
    double value(size_t i, size_t j) const;
};

// Buffers one thread reuses from tensor to tensor.
struct MergeScratch {
    std::vector<std::vector<float>>  deltas;   // sparsified copies, one per model
    std::vector<std::vector<double>> scales;   // della: keep probabilities (rescale density: 1 / p), one per model
    std::vector<float>               work;     // magnitudes
    std::vector<double>              sums;     // model_stock: dot products
    std::vector<uint64_t>            order;    // della: one row's ranking
};

using TensorMergeFn = void (*)(const TensorInput & in, const TensorParams & params, MergeScratch & scratch,
                               float * out);

enum class ParamScope { global, model };
enum class ParamKind { number, flag, choice };

// A parameter a method takes. Defaults are mergekit's.
struct ParamSpec {
    const char * name;
    ParamScope   scope;
    ParamKind    kind;
    double       default_number;  // number; flag (0/1)
    const char * default_choice;  // choice
    const char * choices;         // choice: "a|b|c"
    bool         required;        // no default: every (non-base) model must give it
};

enum class BaseUse { required, optional, unused };

struct MergeMethodDef {
    const char *           name;
    BaseUse                base;
    size_t                 min_models, max_models;  // models to merge, the base not counted
    std::vector<ParamSpec> params;
    TensorMergeFn          merge;
    const char *           summary;  // one line for --help and the error listing methods
};

const std::vector<MergeMethodDef> & merge_methods();
const MergeMethodDef *              find_merge_method(const std::string & name);  // null if unknown
std::string                         merge_method_list();                          // "linear, task_arithmetic, ..."

const ParamSpec * find_param(const MergeMethodDef & method, const std::string & name);  // null if not taken
// "weight, density (per model); lambda, normalize, ... (global)", for error messages.
std::string       param_list(const MergeMethodDef & method);
// InputError unless `method` takes parameter `name`, naming `where` (FILE:LINE or a field) and
// listing the method's parameters. `per_model`: the key was given for one model; a global
// parameter is refused there (a per-model one may be given globally: it applies to every model).
void              check_param_name(const MergeMethodDef & method, const std::string & name, bool per_model,
                                   const std::string & where);

// The configured value of parameter `name` for the tensor being planned: `model` is the model's
// index, or -1 for a global parameter; nullopt = not set (the default applies).
using ParamLookup = std::function<std::optional<ParamScalar>(const std::string & name, int model)>;

// Defaults applied, kinds and ranges checked (0 < density <= 1, ...). InputError names the
// parameter, the model index where it is per model, and `tensor`.
TensorParams resolve_tensor_params(const MergeMethodDef & method, size_t models, const ParamLookup & lookup,
                                   const std::string & tensor);

// out[n] = the merged tensor. out may not alias the inputs. Deterministic: the result depends
// only on the inputs and params (random masks on seed, in.name and the model's index).
void merge_tensor(const MergeMethodDef & method, const TensorInput & in, const TensorParams & params,
                  MergeScratch & scratch, float * out);

// The keep mask the random sparsifier of `method` (dare_*, della*) draws for model `model`'s
// delta of this tensor, as merge_tensor draws it: keep[j] = 1 when entry j survives the drop.
// Empty when nothing is drawn (another method, no delta, density >= 1). For tests and checks.
void random_keep_mask(const MergeMethodDef & method, const TensorInput & in, const TensorParams & params,
                      size_t model, std::vector<uint8_t> & keep);

}  // namespace paft
