#include "merge/methods.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace paft {
namespace {

constexpr double kTinyDivisor = 1e-8;  // a normalising divisor this close to zero is replaced by 1
constexpr size_t kBlock       = 256;   // entries per block of the mixing loops (2 KiB of doubles each)
constexpr size_t kAnyCount    = std::numeric_limits<size_t>::max();

// ---- Parameters -----------------------------------------------------------------------------

ParamSpec model_number(const char * name, double fallback) {
    return {name, ParamScope::model, ParamKind::number, fallback, nullptr, nullptr, false};
}
ParamSpec global_number(const char * name, double fallback) {
    return {name, ParamScope::global, ParamKind::number, fallback, nullptr, nullptr, false};
}
ParamSpec global_flag(const char * name, bool fallback) {
    return {name, ParamScope::global, ParamKind::flag, fallback ? 1.0 : 0.0, nullptr, nullptr, false};
}
ParamSpec global_choice(const char * name, const char * fallback, const char * choices) {
    return {name, ParamScope::global, ParamKind::choice, 0.0, fallback, choices, false};
}

const ParamSpec kWeight = {"weight", ParamScope::model, ParamKind::number, 0.0, nullptr, nullptr, true};
const ParamSpec kT      = {"t", ParamScope::global, ParamKind::number, 0.0, nullptr, nullptr, true};

// How a task-arithmetic method sparsifies each delta (mergekit's SparsificationMethod).
enum class Sparsifier { none, magnitude, outliers, bernoulli, della };

// The parameters of a task-arithmetic method (mergekit's GeneralizedTaskArithmeticMerge, with
// paft's extensions: consensus_method, normalize_divisor, topk_scope).
std::vector<ParamSpec> gta_params(Sparsifier how, bool consensus, bool normalize, bool rescale) {
    std::vector<ParamSpec> p = {kWeight};
    if (how != Sparsifier::none) {
        p.push_back(model_number("density", 1.0));
    }
    if (how == Sparsifier::outliers) {
        p.push_back(model_number("gamma", 0.01));
    }
    if (how == Sparsifier::della) {
        p.push_back(model_number("epsilon", 0.15));
    }
    p.push_back(global_number("lambda", 1.0));
    p.push_back(global_flag("normalize", normalize));
    if (how != Sparsifier::none) {
        p.push_back(global_choice("rescale", rescale ? "true" : "false", "true|false|l1|density|none"));
    }
    p.push_back(global_flag("int8_mask", false));
    if (consensus) {
        p.push_back(global_choice("consensus_method", "sum", "sum|count"));
        p.push_back(global_choice("normalize_divisor", "weights", "weights|count"));
    }
    if (how == Sparsifier::magnitude || how == Sparsifier::outliers) {
        p.push_back(global_choice("topk_scope", "tensor", "tensor|row|model"));
    }
    return p;
}

std::string scalar_text(const ParamScalar & v) {
    switch (v.kind) {
        case ParamScalar::Kind::number: return fmt::format("{}", v.number);
        case ParamScalar::Kind::boolean: return v.boolean ? "true" : "false";
        default: return "'" + v.text + "'";
    }
}

// "density (model 1) for tensor 'x'": what an error message names.
std::string param_label(const ParamSpec & spec, int model, const std::string & tensor) {
    std::string label = spec.name;
    if (model >= 0) {
        label += fmt::format(" (model {})", model);
    }
    if (!tensor.empty()) {
        label += fmt::format(" for tensor '{}'", tensor);
    }
    return label;
}

double number_value(const ParamScalar & v, const std::string & label) {
    if (v.kind != ParamScalar::Kind::number) {
        throw InputError(fmt::format("{}: expected a number, got {}", label, scalar_text(v)));
    }
    if (!std::isfinite(v.number)) {
        throw InputError(fmt::format("{}: {} is not a finite number", label, v.number));
    }
    return v.number;
}

bool flag_value(const ParamScalar & v, const std::string & label) {
    if (v.kind == ParamScalar::Kind::boolean) {
        return v.boolean;
    }
    if (v.kind == ParamScalar::Kind::number && (v.number == 0.0 || v.number == 1.0)) {
        return v.number == 1.0;
    }
    throw InputError(fmt::format("{}: expected true or false, got {}", label, scalar_text(v)));
}

std::string choice_value(const ParamScalar & v, const ParamSpec & spec, const std::string & label) {
    std::string word = v.kind == ParamScalar::Kind::boolean ? (v.boolean ? "true" : "false") : v.text;
    if (v.kind != ParamScalar::Kind::number) {
        const std::string choices = std::string("|") + spec.choices + "|";
        if (!word.empty() && choices.find("|" + word + "|") != std::string::npos) {
            return word;
        }
    }
    std::string known;
    for (char c : std::string(spec.choices)) {
        known += c == '|' ? std::string(", ") : std::string(1, c);
    }
    throw InputError(fmt::format("{}: unknown value {} (known: {})", label, scalar_text(v), known));
}

void check_range(double x, double lo, bool lo_open, double hi, bool hi_open, const std::string & label) {
    const bool above = lo_open ? x > lo : x >= lo;
    const bool below = hi_open ? x < hi : x <= hi;
    if (!above || !below) {
        throw InputError(fmt::format("{}: {} is not in {}{}, {}{}", label, x, lo_open ? "(" : "[", lo, hi,
                                     hi_open ? ")" : "]"));
    }
}

// Sets the field of `p` that parameter `spec` configures, from `value` (nullopt = the default).
void apply_param(const MergeMethodDef & method, const ParamSpec & spec, const std::optional<ParamScalar> & value,
                 int model, const std::string & tensor, TensorParams & p) {
    const std::string label = param_label(spec, model, tensor);
    if (!value && spec.required) {
        throw InputError(fmt::format("{}: {} needs this parameter and it is not set", label, method.name));
    }
    const std::string name = spec.name;
    if (spec.kind == ParamKind::number) {
        const double x = value ? number_value(*value, label) : spec.default_number;
        if (name == "weight") {
            p.models[model].weight = x;
        } else if (name == "density") {
            check_range(x, 0.0, true, 1.0, false, label);
            p.models[model].density = x;
        } else if (name == "gamma") {
            check_range(x, 0.0, false, 1.0, false, label);
            p.models[model].gamma = x;
        } else if (name == "epsilon") {
            check_range(x, 0.0, false, 1.0, true, label);
            p.models[model].epsilon = x;
        } else if (name == "lambda") {
            p.lambda = x;
        } else if (name == "t") {
            p.t = x;
        } else {
            throw std::logic_error("unhandled number parameter " + name);
        }
    } else if (spec.kind == ParamKind::flag) {
        const bool x = value ? flag_value(*value, label) : spec.default_number != 0.0;
        if (name == "normalize") {
            p.normalize = x;
        } else if (name == "filter_wise") {
            p.filter_wise = x;
        } else if (name != "int8_mask") {  // mergekit's mask dtype: no effect on the result
            throw std::logic_error("unhandled flag parameter " + name);
        }
    } else {
        const std::string x = value ? choice_value(*value, spec, label) : spec.default_choice;
        if (name == "rescale") {
            p.rescale = parse_rescale(x);
        } else if (name == "consensus_method") {
            p.consensus = x == "count" ? Consensus::count : Consensus::sum;
        } else if (name == "normalize_divisor") {
            p.divisor = x == "count" ? Divisor::count : Divisor::weights;
        } else if (name == "topk_scope") {
            p.topk = x == "row" ? TopkScope::row : x == "model" ? TopkScope::model : TopkScope::tensor;
        } else {
            throw std::logic_error("unhandled choice parameter " + name);
        }
    }
}

std::string tensor_suffix(const std::string & tensor) {
    return tensor.empty() ? "" : fmt::format(" for tensor '{}'", tensor);
}

// ---- Sparsification ---------------------------------------------------------------------------

// Model i's delta as floats: the input's, or models[i] - base rounded to f32 (into
// scratch.deltas[i]); null = a zero delta.
const float * input_delta(const TensorInput & in, size_t i, MergeScratch & scratch) {
    if (in.deltas[i]) {
        return in.deltas[i];
    }
    if (i >= in.models.size() || !in.models[i]) {
        return nullptr;
    }
    std::vector<float> & buf = scratch.deltas[i];
    buf.resize(in.n);
    for (size_t j = 0; j < in.n; j++) {
        buf[j] = in.models[i][j] - in.base[j];
    }
    return buf.data();
}

// Magnitude selection over one span of d (a tensor or one of its rows): TIES' top-k or
// breadcrumbs' band. `what` names the span for the error when nothing would be kept.
void select_span(float * d, size_t n, const ModelParams & mp, bool outliers, std::vector<float> & work,
                 size_t model, const std::string & what) {
    if (outliers) {
        const OutlierCounts c = outlier_counts(n, mp.density, mp.gamma);
        if (c.n_keep == 0) {
            throw InputError(fmt::format("density (model {}): {} keeps no entry of {} ({} entries)", model, mp.density,
                                         what, n));
        }
        const TopCut keep = top_cut(d, n, c.n_top + c.n_keep, work);
        const TopCut drop = top_cut(d, n, c.n_top, work);
        apply_cuts(d, n, keep, drop);
        return;
    }
    const size_t k = (size_t) (mp.density * (double) n);  // Python's int(density * numel)
    if (k == 0) {
        throw InputError(
            fmt::format("density (model {}): {} keeps no entry of {} ({} entries)", model, mp.density, what, n));
    }
    magnitude_trim(d, n, k, work);
}

void select_by_magnitude(const TensorInput & in, const TensorParams & p, size_t i, bool outliers, float * d,
                         MergeScratch & scratch) {
    const ModelParams & mp = p.models[i];
    switch (p.topk) {
        case TopkScope::tensor:
            select_span(d, in.n, mp, outliers, scratch.work, i, fmt::format("tensor '{}'", in.name));
            break;
        case TopkScope::row:
            for (size_t r = 0; r < in.rows; r++) {
                select_span(d + r * in.cols, in.cols, mp, outliers, scratch.work, i,
                            fmt::format("a row of tensor '{}'", in.name));
            }
            break;
        case TopkScope::model: {
            const ModelCut & cut = p.cuts[i];
            apply_cuts(d, in.n, TopCut{cut.threshold, cut.equal_kept}, TopCut{cut.drop_threshold, cut.drop_equal});
            break;
        }
    }
}

// One model's delta after sparsification: the surviving entries (a copy in scratch, or the
// input when nothing is dropped), the factor to scale them by and, for DELLA with
// rescale: density, a factor per entry (1 / its keep probability).
struct Sparse {
    const float *  values      = nullptr;  // null: a zero delta
    double         scale       = 1.0;
    const double * entry_scale = nullptr;
};

Sparse sparsify_delta(const TensorInput & in, const TensorParams & p, size_t i, Sparsifier how,
                      MergeScratch & scratch) {
    const float * d = input_delta(in, i, scratch);
    if (!d) {
        return {};
    }
    const double density = p.models[i].density;
    if (how == Sparsifier::none || density >= 1.0) {
        return {d, 1.0, nullptr};  // mergekit: density >= 1 returns the delta untouched
    }
    std::vector<float> & buf = scratch.deltas[i];
    if (d != buf.data()) {
        buf.assign(d, d + in.n);
    }
    const double before = p.rescale == Rescale::l1 ? l1_norm(buf.data(), in.n) : 0.0;
    Sparse       s;
    s.values = buf.data();
    switch (how) {
        case Sparsifier::magnitude: select_by_magnitude(in, p, i, false, buf.data(), scratch); break;
        case Sparsifier::outliers: select_by_magnitude(in, p, i, true, buf.data(), scratch); break;
        case Sparsifier::bernoulli: dare_drop(buf.data(), in.n, density, dare_stream(p.seed, in.name, i)); break;
        case Sparsifier::della: {
            std::vector<double> & prob = scratch.scales[i];
            della_probabilities(buf.data(), in.rows, in.cols, density, p.models[i].epsilon, prob, scratch.order);
            const uint64_t stream = dare_stream(p.seed, in.name, i);
            for (size_t j = 0; j < in.n; j++) {
                if (!dare_keep(stream, j, prob[j])) {
                    buf[j] = 0.0f;
                }
            }
            if (p.rescale == Rescale::density) {  // DELLA's own rescale: each survivor by 1 / p
                for (double & x : prob) {
                    x = 1.0 / x;
                }
                s.entry_scale = prob.data();
                return s;
            }
            break;
        }
        case Sparsifier::none: break;
    }
    const double after = p.rescale == Rescale::l1 ? l1_norm(buf.data(), in.n) : 0.0;
    s.scale            = rescale_factor(p.rescale, density, before, after);
    return s;
}

// ---- The task-arithmetic family -------------------------------------------------------------

// mergekit's generalized task arithmetic: sparsify each delta, weight it, optionally keep only
// the entries whose sign agrees with the elected sign, mix, optionally normalise, scale by
// lambda and add to the base. Per entry, in double.
void merge_gta(const TensorInput & in, const TensorParams & p, MergeScratch & scratch, float * out, Sparsifier how,
               bool elect) {
    const size_t m = in.deltas.size();
    scratch.deltas.resize(m);
    scratch.scales.resize(m);
    std::vector<Sparse> d(m);
    std::vector<double> wd_scale(m, 0.0);  // w_i * rescale_i: the weighted delta is this times d_i
    double              wsum = 0.0;
    bool                any  = false;
    for (size_t i = 0; i < m; i++) {
        wsum += p.models[i].weight;
        d[i]        = sparsify_delta(in, p, i, how, scratch);
        wd_scale[i] = p.models[i].weight * d[i].scale;
        any |= d[i].values != nullptr;
    }
    if (!any) {
        std::copy(in.base, in.base + in.n, out);  // every delta is zero: base + lambda * 0
        return;
    }
    const Consensus consensus = !elect ? Consensus::none : p.consensus == Consensus::count ? Consensus::count
                                                                                            : Consensus::sum;
    // Blocks of entries, one model at a time inside a block: the loops vectorise, and each entry
    // still adds its models in index order (skipped models would only add zeros).
    double wd[kBlock], sum[kBlock], mixed[kBlock], divisor[kBlock];
    for (size_t j0 = 0; j0 < in.n; j0 += kBlock) {
        const size_t len = std::min(kBlock, in.n - j0);
        std::fill(sum, sum + len, 0.0);
        std::fill(mixed, mixed + len, 0.0);
        std::fill(divisor, divisor + len, consensus == Consensus::none ? wsum : 0.0);
        auto weighted = [&](size_t i) {  // wd[t] = w_i c_i d_i (times 1 / p for DELLA's density rescale)
            const float * di = d[i].values + j0;
            for (size_t t = 0; t < len; t++) {
                wd[t] = wd_scale[i] * (double) di[t];
            }
            if (d[i].entry_scale) {
                for (size_t t = 0; t < len; t++) {
                    wd[t] *= d[i].entry_scale[j0 + t];
                }
            }
        };
        // sum: the mixed delta without consensus, the weighted sum that elects with `sum`, or the
        // vote count with `count` (sign(0) = 0).
        for (size_t i = 0; i < m; i++) {
            if (!d[i].values) {
                continue;
            }
            weighted(i);
            for (size_t t = 0; t < len; t++) {
                sum[t] += consensus == Consensus::count ? (double) ((wd[t] > 0.0) - (wd[t] < 0.0)) : wd[t];
            }
        }
        if (consensus == Consensus::none) {
            std::copy(sum, sum + len, mixed);
        } else {
            for (size_t i = 0; i < m; i++) {
                if (!d[i].values) {
                    continue;  // sign 0: never agrees
                }
                weighted(i);
                const double w = p.divisor == Divisor::count ? 1.0 : p.models[i].weight;
                for (size_t t = 0; t < len; t++) {
                    // elected sign: + when the sum (or vote) >= 0; a dropped entry (sign 0) agrees with neither
                    const bool agree = sum[t] >= 0.0 ? wd[t] > 0.0 : wd[t] < 0.0;
                    mixed[t] += agree ? wd[t] : 0.0;
                    divisor[t] += agree ? w : 0.0;
                }
            }
        }
        for (size_t t = 0; t < len; t++) {
            double x = mixed[t];
            if (p.normalize) {
                x /= std::fabs(divisor[t]) < kTinyDivisor ? 1.0 : divisor[t];
            }
            out[j0 + t] = (float) ((double) in.base[j0 + t] + x * p.lambda);
        }
    }
}

void merge_task_arithmetic(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::none, false);
}
void merge_ties(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::magnitude, true);
}
void merge_dare_ties(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::bernoulli, true);
}
void merge_dare_linear(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::bernoulli, false);
}
void merge_breadcrumbs(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::outliers, false);
}
void merge_breadcrumbs_ties(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::outliers, true);
}
void merge_della(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::della, true);
}
void merge_della_linear(const TensorInput & in, const TensorParams & p, MergeScratch & s, float * out) {
    merge_gta(in, p, s, out, Sparsifier::della, false);
}

// ---- Methods on whole models ----------------------------------------------------------------

// linear: sum_i w_i model_i, divided by sum_i w_i when normalize (resolve_tensor_params refuses
// a sum that small). A tensor no model changes comes out as base * sum w / divisor.
void merge_linear(const TensorInput & in, const TensorParams & p, MergeScratch &, float * out) {
    const size_t m    = in.deltas.size();
    double       wsum = 0.0;
    for (const ModelParams & mp : p.models) {
        wsum += mp.weight;
    }
    if (p.normalize && std::fabs(wsum) < kTinyDivisor) {
        throw InputError(fmt::format("weight: the weights sum to {}{}, so linear cannot normalise by their sum", wsum,
                                     tensor_suffix(in.name)));
    }
    const double divisor = p.normalize ? wsum : 1.0;
    double       acc[kBlock];
    for (size_t j0 = 0; j0 < in.n; j0 += kBlock) {
        const size_t len = std::min(kBlock, in.n - j0);
        std::fill(acc, acc + len, 0.0);
        for (size_t i = 0; i < m; i++) {
            const double  w     = p.models[i].weight;
            const float * model = i < in.models.size() ? in.models[i] : nullptr;
            const float * delta = in.deltas[i];
            for (size_t t = 0; t < len; t++) {
                const size_t j = j0 + t;
                const double v = model ? (double) model[j] : (double) in.base[j] + (delta ? (double) delta[j] : 0.0);
                acc[t] += w * v;
            }
        }
        for (size_t t = 0; t < len; t++) {
            out[j0 + t] = (float) (acc[t] / divisor);
        }
    }
}

// slerp (mergekit's rule, in double): the base (t = 0) and the model, each flattened to one
// vector; cos = <v0 / |v0|, v1 / |v1|> (a norm <= 1e-8 is not divided by); |cos| > 0.9995:
// lerp (1 - t) v0 + t v1; otherwise theta = acos(cos) and the result is
// sin((1 - t) theta) / sin(theta) v0 + sin(t theta) / sin(theta) v1, on the unnormalised vectors.
void merge_slerp(const TensorInput & in, const TensorParams & p, MergeScratch &, float * out) {
    constexpr double kEps = 1e-8, kDotThreshold = 0.9995;
    double           n0 = 0.0, n1 = 0.0, dot = 0.0;
    for (size_t j = 0; j < in.n; j++) {
        const double a = in.base[j], b = in.value(0, j);
        n0 += a * a;
        n1 += b * b;
        dot += a * b;
    }
    n0 = std::sqrt(n0);
    n1 = std::sqrt(n1);
    const double cos = dot / ((n0 > kEps ? n0 : 1.0) * (n1 > kEps ? n1 : 1.0));
    double       s0 = 1.0 - p.t, s1 = p.t;
    if (std::fabs(cos) <= kDotThreshold) {
        const double theta = std::acos(cos), sin_theta = std::sin(theta);
        s0                 = std::sin(theta - theta * p.t) / sin_theta;
        s1                 = std::sin(theta * p.t) / sin_theta;
    }
    for (size_t j = 0; j < in.n; j++) {
        out[j] = (float) (s0 * (double) in.base[j] + s1 * in.value(0, j));
    }
}

// model_stock t for one group of entries (the tensor, or a row with filter_wise): the mean of
// the pairwise cosines of the task vectors (each |d_i||d_j| clamped to >= 1e-6, each cosine to
// [-1, 1]) and t = N cos / (1 + (N - 1) cos).
double model_stock_t(const std::vector<const float *> & d, size_t begin, size_t end, std::vector<double> & sums,
                     const std::string & where) {
    const size_t m = d.size();
    sums.assign(m * m, 0.0);  // sums[i m + k] = <d_i, d_k> over the group, k >= i
    for (size_t i = 0; i < m; i++) {
        for (size_t k = i; k < m; k++) {
            if (!d[i] || !d[k]) {
                continue;
            }
            double s = 0.0;
            for (size_t j = begin; j < end; j++) {
                s += (double) d[i][j] * (double) d[k][j];
            }
            sums[i * m + k] = s;
        }
    }
    double cos_sum = 0.0;
    for (size_t i = 0; i < m; i++) {
        for (size_t k = i + 1; k < m; k++) {
            const double norms = std::sqrt(sums[i * m + i]) * std::sqrt(sums[k * m + k]);
            cos_sum += std::clamp(sums[i * m + k] / std::max(norms, 1e-6), -1.0, 1.0);
        }
    }
    const double N   = (double) m;
    const double cos = cos_sum / (N * (N - 1.0) / 2.0);
    const double den = 1.0 + (N - 1.0) * cos;
    if (den == 0.0) {
        throw InputError(fmt::format("model_stock: the task vectors of {} have mean cosine -1/(N-1) = {}, so its "
                                     "interpolation factor t = N cos / (1 + (N - 1) cos) is undefined",
                                     where, cos));
    }
    return N * cos / den;
}

// model_stock: result = t * mean_i model_i + (1 - t) * base, t from the task vectors' angles,
// per tensor or (filter_wise) per row.
void merge_model_stock(const TensorInput & in, const TensorParams & p, MergeScratch & scratch, float * out) {
    const size_t m = in.deltas.size();
    scratch.deltas.resize(m);
    std::vector<const float *> d(m);
    for (size_t i = 0; i < m; i++) {
        d[i] = input_delta(in, i, scratch);
    }
    const size_t groups = p.filter_wise ? in.rows : 1;
    const size_t len    = in.n / groups;
    for (size_t g = 0; g < groups; g++) {
        const std::string where = p.filter_wise ? fmt::format("row {} of tensor '{}'", g, in.name)
                                                : fmt::format("tensor '{}'", in.name);
        const double      t     = model_stock_t(d, g * len, (g + 1) * len, scratch.sums, where);
        for (size_t j = g * len; j < (g + 1) * len; j++) {
            double avg = 0.0;
            for (size_t i = 0; i < m; i++) {
                avg += in.value(i, j);
            }
            avg /= (double) m;
            out[j] = (float) (t * avg + (1.0 - t) * (double) in.base[j]);
        }
    }
}

Sparsifier random_sparsifier(const MergeMethodDef & method) {
    const std::string name = method.name;
    if (name == "dare_ties" || name == "dare_linear") {
        return Sparsifier::bernoulli;
    }
    if (name == "della" || name == "della_linear") {
        return Sparsifier::della;
    }
    return Sparsifier::none;
}

}  // namespace

double TensorInput::value(size_t i, size_t j) const {
    if (i < models.size() && models[i]) {
        return models[i][j];
    }
    return (double) base[j] + (deltas[i] ? (double) deltas[i][j] : 0.0);
}

const std::vector<MergeMethodDef> & merge_methods() {
    // Defaults are mergekit's (merge_methods/registry.py): normalize, and rescale (true = l1).
    using S                                          = Sparsifier;
    static const std::vector<MergeMethodDef> methods = {
        {"linear", BaseUse::unused, 1, kAnyCount, {kWeight, global_flag("normalize", true)}, merge_linear,
         "weighted mean of the models: sum_i w_i model_i / sum_i w_i"},
        {"task_arithmetic", BaseUse::required, 1, kAnyCount, gta_params(S::none, false, false, false),
         merge_task_arithmetic, "base + lambda * sum_i w_i delta_i"},
        {"ties", BaseUse::required, 1, kAnyCount, gta_params(S::magnitude, true, true, false), merge_ties,
         "TIES: magnitude top-k per delta, sign election, mean of the agreeing deltas"},
        {"dare_ties", BaseUse::required, 1, kAnyCount, gta_params(S::bernoulli, true, false, true), merge_dare_ties,
         "DARE random drop, rescaled, with TIES' sign election"},
        {"dare_linear", BaseUse::required, 1, kAnyCount, gta_params(S::bernoulli, false, false, true),
         merge_dare_linear, "DARE random drop, rescaled, summed"},
        {"breadcrumbs", BaseUse::required, 1, kAnyCount, gta_params(S::outliers, false, false, false),
         merge_breadcrumbs, "Model Breadcrumbs: drop the largest gamma share and the smallest, summed"},
        {"breadcrumbs_ties", BaseUse::required, 1, kAnyCount, gta_params(S::outliers, true, false, false),
         merge_breadcrumbs_ties, "Model Breadcrumbs with TIES' sign election"},
        {"della", BaseUse::required, 1, kAnyCount, gta_params(S::della, true, true, true), merge_della,
         "DELLA: random drop with keep probability by magnitude rank per row, sign election"},
        {"della_linear", BaseUse::required, 1, kAnyCount, gta_params(S::della, false, false, true),
         merge_della_linear, "DELLA's drop, summed"},
        {"slerp", BaseUse::required, 1, 1, {kT}, merge_slerp,
         "spherical interpolation from the base (t = 0) to the one model (t = 1)"},
        {"model_stock", BaseUse::required, 2, kAnyCount, {global_flag("filter_wise", false)}, merge_model_stock,
         "Model Stock: base + t (mean - base), t from the task vectors' angles"},
    };
    return methods;
}

const MergeMethodDef * find_merge_method(const std::string & name) {
    for (const MergeMethodDef & m : merge_methods()) {
        if (name == m.name) {
            return &m;
        }
    }
    return nullptr;
}

std::string merge_method_list() {
    std::string list;
    for (const MergeMethodDef & m : merge_methods()) {
        list += (list.empty() ? "" : ", ") + std::string(m.name);
    }
    return list;
}

const ParamSpec * find_param(const MergeMethodDef & method, const std::string & name) {
    for (const ParamSpec & spec : method.params) {
        if (name == spec.name) {
            return &spec;
        }
    }
    return nullptr;
}

std::string param_list(const MergeMethodDef & method) {
    std::string per_model, global;
    for (const ParamSpec & spec : method.params) {
        std::string & list = spec.scope == ParamScope::model ? per_model : global;
        list += (list.empty() ? "" : ", ") + std::string(spec.name);
    }
    std::string text = per_model.empty() ? "" : per_model + " (per model)";
    if (!global.empty()) {
        text += (text.empty() ? "" : "; ") + global + " (global)";
    }
    return text;
}

void check_param_name(const MergeMethodDef & method, const std::string & name, bool per_model,
                      const std::string & where) {
    const ParamSpec * spec = find_param(method, name);
    if (!spec) {
        throw InputError(fmt::format("{}: {} takes no parameter '{}' (its parameters: {})", where, method.name, name,
                                     param_list(method)));
    }
    if (per_model && spec->scope == ParamScope::global) {
        throw InputError(fmt::format("{}: '{}' is a global parameter of {}: set it in the merge's parameters, not "
                                     "a model's",
                                     where, name, method.name));
    }
}

TensorParams resolve_tensor_params(const MergeMethodDef & method, size_t models, const ParamLookup & lookup,
                                   const std::string & tensor) {
    if (models < method.min_models || models > method.max_models) {
        const std::string range = method.max_models == kAnyCount ? fmt::format("at least {}", method.min_models)
                                  : method.min_models == method.max_models
                                      ? fmt::format("exactly {}", method.min_models)
                                      : fmt::format("{} to {}", method.min_models, method.max_models);
        throw InputError(fmt::format("{} merges {} model{} (the base not counted), not {}", method.name, range,
                                     method.max_models == 1 ? "" : "s", models));
    }
    TensorParams p;
    p.models.resize(models);
    for (const ParamSpec & spec : method.params) {
        if (spec.scope == ParamScope::global) {
            apply_param(method, spec, lookup(spec.name, -1), -1, tensor, p);
        } else {
            for (size_t i = 0; i < models; i++) {
                apply_param(method, spec, lookup(spec.name, (int) i), (int) i, tensor, p);
            }
        }
    }
    if (std::string(method.name) == "linear" && p.normalize) {  // mergekit would divide by the sum unguarded
        double wsum = 0.0;
        for (const ModelParams & mp : p.models) {
            wsum += mp.weight;
        }
        if (std::fabs(wsum) < kTinyDivisor) {
            throw InputError(fmt::format("weight: the weights sum to {}{}, so linear cannot normalise by their sum",
                                         wsum, tensor_suffix(tensor)));
        }
    }
    if (find_param(method, "epsilon")) {  // della: mergekit's check, made when a model is sparsified
        for (size_t i = 0; i < models; i++) {
            const ModelParams & mp = p.models[i];
            if (mp.density < 1.0 && (mp.density + mp.epsilon >= 1.0 || mp.density - mp.epsilon <= 0.0)) {
                throw InputError(fmt::format("epsilon (model {}){}: density {} +/- epsilon {} must lie in (0, 1)", i,
                                             tensor_suffix(tensor), mp.density, mp.epsilon));
            }
        }
    }
    return p;
}

void merge_tensor(const MergeMethodDef & method, const TensorInput & in, const TensorParams & params,
                  MergeScratch & scratch, float * out) {
    const size_t m = in.deltas.size();
    if (params.models.size() != m || (!in.models.empty() && in.models.size() != m)) {
        throw std::invalid_argument(fmt::format("merge_tensor '{}': {} deltas, {} models, params for {}", in.name, m,
                                                in.models.size(), params.models.size()));
    }
    if (in.n != in.rows * in.cols) {
        throw std::invalid_argument(
            fmt::format("merge_tensor '{}': n = {} is not rows {} x cols {}", in.name, in.n, in.rows, in.cols));
    }
    if (params.topk == TopkScope::model && params.cuts.size() != m) {
        throw std::invalid_argument(fmt::format("merge_tensor '{}': topk_scope model needs one cut per model",
                                                in.name));
    }
    if (!in.base) {
        for (size_t i = 0; i < m; i++) {
            if (method.base != BaseUse::unused || i >= in.models.size() || !in.models[i]) {
                throw std::invalid_argument(
                    fmt::format("merge_tensor '{}': no base, so {} needs every model's tensor", in.name, method.name));
            }
        }
    }
    if (in.n == 0) {
        return;
    }
    method.merge(in, params, scratch, out);
}

void random_keep_mask(const MergeMethodDef & method, const TensorInput & in, const TensorParams & params,
                      size_t model, std::vector<uint8_t> & keep) {
    keep.clear();
    const Sparsifier how = random_sparsifier(method);
    MergeScratch     scratch;
    scratch.deltas.resize(in.deltas.size());
    const float * d = how == Sparsifier::none ? nullptr : input_delta(in, model, scratch);
    if (!d || params.models[model].density >= 1.0) {
        return;
    }
    const ModelParams & mp     = params.models[model];
    const uint64_t      stream = dare_stream(params.seed, in.name, model);
    std::vector<double> prob(in.n, mp.density);
    if (how == Sparsifier::della) {
        della_probabilities(d, in.rows, in.cols, mp.density, mp.epsilon, prob, scratch.order);
    }
    keep.resize(in.n);
    for (size_t j = 0; j < in.n; j++) {
        keep[j] = dare_keep(stream, j, prob[j]) ? 1 : 0;
    }
}

}  // namespace paft
