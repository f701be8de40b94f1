#include "merge/methods.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace paft {
namespace {

// mergekit's guard: a normalising divisor this close to zero is replaced by 1.
constexpr double kTinyDivisor = 1e-8;
constexpr size_t kBlock       = 256;  // entries per block of the mixing loop (3 x 2 KiB of doubles)

// linear: sum_i w_i (base + d_i), divided by sum_i w_i when normalize. The models are the full
// tensors base + d_i, so a tensor with no delta comes out as base * sum w / divisor.
void merge_linear(const TensorInput & in, const MergeSettings & s, MergeScratch &, float * out) {
    const size_t m    = in.deltas.size();
    double       wsum = 0.0;
    for (double w : s.weights) {
        wsum += w;
    }
    const double divisor = s.normalize ? wsum : 1.0;  // resolve_merge_options refuses |sum w| < 1e-8 here
    for (size_t j = 0; j < in.n; j++) {
        const double b   = in.base[j];
        double       acc = 0.0;
        for (size_t i = 0; i < m; i++) {
            acc += s.weights[i] * (b + (in.deltas[i] ? (double) in.deltas[i][j] : 0.0));
        }
        out[j] = (float) (acc / divisor);
    }
}

enum class Sparsifier { none, magnitude, bernoulli };
enum class Consensus { none, sum };

// One model's delta after sparsification: the surviving entries (a copy in scratch, or the
// input when nothing is dropped) and the rescale factor to apply to them.
struct Sparse {
    const float * values = nullptr;
    double        scale  = 1.0;
};

Sparse sparsify_delta(const TensorInput & in, const MergeSettings & s, size_t i, Sparsifier how,
                      MergeScratch & scratch) {
    const double density = s.densities[i];
    if (how == Sparsifier::none || density >= 1.0) {
        return {in.deltas[i], 1.0};  // mergekit: density >= 1 returns the delta untouched
    }
    std::vector<float> & buf = scratch.deltas[i];
    buf.assign(in.deltas[i], in.deltas[i] + in.n);
    if (how == Sparsifier::magnitude) {
        const size_t k = (size_t) (density * (double) in.n);  // Python's int(density * numel)
        if (k == 0) {
            throw InputError(fmt::format("densities[{}]: {} keeps no entry of tensor '{}' ({} entries)", i, density,
                                         in.name, in.n));
        }
        magnitude_trim(buf.data(), in.n, k, scratch.work);
    } else {
        dare_drop(buf.data(), in.n, density, dare_stream(s.seed, in.name, i));
    }
    double scale = 1.0;
    if (s.rescale != Rescale::none) {
        const double before = s.rescale == Rescale::l1 ? l1_norm(in.deltas[i], in.n) : 0.0;
        const double after  = s.rescale == Rescale::l1 ? l1_norm(buf.data(), in.n) : 0.0;
        scale               = rescale_factor(s.rescale, density, before, after);
    }
    return {buf.data(), scale};
}

// Generalized task arithmetic (mergekit's GTA): sparsify each delta, weight it, optionally keep
// only the entries whose sign agrees with the elected sign of the weighted sum, mix, optionally
// normalise by the (kept) weights, scale by lambda and add to the base. Per entry, in double.
void merge_gta(const TensorInput & in, const MergeSettings & s, MergeScratch & scratch, float * out,
               Sparsifier how, Consensus consensus) {
    const size_t m = in.deltas.size();
    if (std::all_of(in.deltas.begin(), in.deltas.end(), [](const float * d) { return d == nullptr; })) {
        std::copy(in.base, in.base + in.n, out);  // every delta is zero: base + lambda * 0
        return;
    }
    scratch.deltas.resize(m);
    std::vector<const float *> d(m, nullptr);
    std::vector<double>        wd_scale(m, 0.0);  // w_i * rescale_i: the weighted delta is this times d_i
    double                     wsum = 0.0;
    for (size_t i = 0; i < m; i++) {
        wsum += s.weights[i];
        if (in.deltas[i]) {
            const Sparse sp = sparsify_delta(in, s, i, how, scratch);
            d[i]            = sp.values;
            wd_scale[i]     = s.weights[i] * sp.scale;
        }
    }
    // Blocks of entries, one model at a time inside a block: the loops vectorise, and each
    // entry still sums its models in index order (skipped models would only add zeros).
    double sum[kBlock], mixed[kBlock], divisor[kBlock];
    for (size_t j0 = 0; j0 < in.n; j0 += kBlock) {
        const size_t len = std::min(kBlock, in.n - j0);
        std::fill(sum, sum + len, 0.0);
        for (size_t i = 0; i < m; i++) {
            if (d[i]) {
                const float * di = d[i] + j0;
                for (size_t t = 0; t < len; t++) {
                    sum[t] += wd_scale[i] * (double) di[t];
                }
            }
        }
        if (consensus == Consensus::sum) {
            std::fill(mixed, mixed + len, 0.0);
            std::fill(divisor, divisor + len, 0.0);
            for (size_t i = 0; i < m; i++) {
                if (!d[i]) {
                    continue;  // sign 0: never agrees
                }
                const float * di = d[i] + j0;
                const double  w  = s.weights[i];
                for (size_t t = 0; t < len; t++) {
                    // elected sign: + when sum >= 0 (a zero sum elects +); dropped entries
                    // (wd == 0, sign 0) agree with neither
                    const double wd    = wd_scale[i] * (double) di[t];
                    const bool   agree = sum[t] >= 0.0 ? wd > 0.0 : wd < 0.0;
                    mixed[t] += agree ? wd : 0.0;
                    divisor[t] += agree ? w : 0.0;
                }
            }
        } else {
            std::copy(sum, sum + len, mixed);
            std::fill(divisor, divisor + len, wsum);
        }
        for (size_t t = 0; t < len; t++) {
            double x = mixed[t];
            if (s.normalize) {
                x /= std::fabs(divisor[t]) < kTinyDivisor ? 1.0 : divisor[t];
            }
            out[j0 + t] = (float) ((double) in.base[j0 + t] + s.lambda * x);
        }
    }
}

void merge_task_arithmetic(const TensorInput & in, const MergeSettings & s, MergeScratch & scratch, float * out) {
    merge_gta(in, s, scratch, out, Sparsifier::none, Consensus::none);
}

void merge_ties(const TensorInput & in, const MergeSettings & s, MergeScratch & scratch, float * out) {
    merge_gta(in, s, scratch, out, Sparsifier::magnitude, Consensus::sum);
}

void merge_dare_ties(const TensorInput & in, const MergeSettings & s, MergeScratch & scratch, float * out) {
    merge_gta(in, s, scratch, out, Sparsifier::bernoulli, Consensus::sum);
}

std::string known_methods() {
    std::string list;
    for (const MergeMethodDef & m : merge_methods()) {
        list += (list.empty() ? "" : ", ") + std::string(m.name);
    }
    return list;
}

// A per-model list: empty means `fallback` for each model; otherwise one finite value per model.
std::vector<double> per_model(const std::vector<double> & values, size_t models, double fallback, const char * field) {
    if (values.empty()) {
        return std::vector<double>(models, fallback);
    }
    if (values.size() != models) {
        throw InputError(fmt::format("{}: {} values for {} models (give one per model, or none)", field, values.size(),
                                     models));
    }
    for (size_t i = 0; i < values.size(); i++) {
        if (!std::isfinite(values[i])) {
            throw InputError(fmt::format("{}[{}]: {} is not a finite number", field, i, values[i]));
        }
    }
    return values;
}

}  // namespace

const std::vector<MergeMethodDef> & merge_methods() {
    // mergekit's defaults (merge_methods/registry.py): normalize, rescale (true = l1 there).
    static const std::vector<MergeMethodDef> methods = {
        // name              normalize  rescale        sparsifies  lambda  definition
        {"linear",           true,      Rescale::none, false,      false,  merge_linear},
        {"task_arithmetic",  false,     Rescale::none, false,      true,   merge_task_arithmetic},
        {"ties",             true,      Rescale::none, true,       true,   merge_ties},
        {"dare_ties",        false,     Rescale::l1,   true,       true,   merge_dare_ties},
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

MergeSettings resolve_merge_options(const MergeOptions & o, size_t models) {
    const MergeMethodDef * def = find_merge_method(o.method);
    if (!def) {
        throw InputError(fmt::format("method: unknown merge method '{}' (known: {})", o.method, known_methods()));
    }
    if (models == 0) {
        throw InputError("adapters: a merge needs at least one model to merge");
    }
    MergeSettings s;
    s.method  = o.method;
    s.weights = per_model(o.weights, models, 1.0, "weights");
    if (!def->sparsifies && !o.densities.empty()) {
        throw InputError(fmt::format("densities: method {} does not sparsify (densities apply to ties, dare_ties)",
                                     o.method));
    }
    s.densities = per_model(o.densities, models, 1.0, "densities");
    for (size_t i = 0; i < models; i++) {
        if (!(s.densities[i] > 0.0 && s.densities[i] <= 1.0)) {
            throw InputError(fmt::format("densities[{}]: {} is not in (0, 1]", i, s.densities[i]));
        }
    }
    if (o.normalize < -1 || o.normalize > 1) {
        throw InputError(fmt::format("normalize: {} is not -1 (method default), 0 or 1", o.normalize));
    }
    s.normalize = o.normalize == -1 ? def->default_normalize : o.normalize == 1;
    if (!std::isfinite(o.lambda)) {
        throw InputError(fmt::format("lambda: {} is not a finite number", o.lambda));
    }
    if (!def->uses_lambda && o.lambda != 1.0) {
        throw InputError(fmt::format("lambda: method {} has no lambda (it averages whole models)", o.method));
    }
    s.lambda = o.lambda;
    if (o.rescale.empty()) {
        s.rescale = def->default_rescale;
    } else if (!def->sparsifies && o.rescale != "none") {
        throw InputError(fmt::format("rescale: method {} does not sparsify, so there is nothing to rescale", o.method));
    } else {
        s.rescale = parse_rescale(o.rescale);
    }
    if (def->merge == merge_linear && s.normalize) {  // mergekit would divide by the sum unguarded
        double wsum = 0.0;
        for (double w : s.weights) {
            wsum += w;
        }
        if (std::fabs(wsum) < kTinyDivisor) {
            throw InputError(fmt::format("weights: they sum to {}, so linear cannot normalise by their sum", wsum));
        }
    }
    s.seed = o.seed;
    return s;
}

void merge_tensor(const MergeSettings & settings, const TensorInput & in, MergeScratch & scratch, float * out) {
    const MergeMethodDef * def = find_merge_method(settings.method);
    if (!def) {
        throw InputError(fmt::format("method: unknown merge method '{}' (known: {})", settings.method, known_methods()));
    }
    if (in.deltas.size() != settings.weights.size() || in.deltas.size() != settings.densities.size()) {
        throw InputError(fmt::format("tensor '{}': {} deltas for settings of {} models", in.name, in.deltas.size(),
                                     settings.weights.size()));
    }
    def->merge(in, settings, scratch, out);
}

}  // namespace paft
