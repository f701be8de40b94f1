#include "eval/sampling.h"

#include "core/error.h"
#include "core/random.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace paft {
namespace {

// Softmax of x over `ids` (x indexed by id), in the order of ids.
std::vector<double> softmax_over(const std::vector<double> & x, const std::vector<int32_t> & ids) {
    double max = -std::numeric_limits<double>::infinity();
    for (int32_t id : ids) {
        max = std::max(max, x[id]);
    }
    std::vector<double> p(ids.size());
    double              sum = 0;
    for (size_t i = 0; i < ids.size(); i++) {
        p[i] = std::exp(x[ids[i]] - max);
        sum += p[i];
    }
    for (double & v : p) {
        v /= sum;
    }
    return p;
}

// Keeps the ids whose x >= the k-th largest x among them (transformers masks x < that value).
std::vector<int32_t> top_k_filter(const std::vector<double> & x, std::vector<int32_t> ids, int k) {
    if (k <= 0 || k >= (int) ids.size()) {
        return ids;
    }
    std::vector<double> values(ids.size());
    for (size_t i = 0; i < ids.size(); i++) {
        values[i] = x[ids[i]];
    }
    std::nth_element(values.begin(), values.begin() + (k - 1), values.end(), std::greater<double>());
    const double kth = values[k - 1];
    std::erase_if(ids, [&](int32_t id) { return x[id] < kth; });
    return ids;
}

// Nucleus filtering: in ascending order of x (ties by id, as a stable sort of the vocabulary),
// drops the tokens whose cumulative probability is <= 1 - top_p; the largest always stays.
std::vector<int32_t> top_p_filter(const std::vector<double> & x, std::vector<int32_t> ids, double top_p) {
    if (top_p >= 1.0) {
        return ids;
    }
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return x[a] < x[b]; });
    const std::vector<double> p   = softmax_over(x, ids);
    size_t                    cut = 0;  // ids[0, cut) are removed
    double                    cum = 0;
    while (cut + 1 < ids.size()) {
        cum += p[cut];
        if (cum > 1.0 - top_p) {
            break;
        }
        cut++;
    }
    ids.erase(ids.begin(), ids.begin() + cut);
    std::sort(ids.begin(), ids.end());
    return ids;
}

// Drops the tokens whose probability is below min_p times the largest one (which always stays).
std::vector<int32_t> min_p_filter(const std::vector<double> & x, std::vector<int32_t> ids, double min_p) {
    if (min_p <= 0.0) {
        return ids;
    }
    const std::vector<double> p       = softmax_over(x, ids);
    const double              max     = *std::max_element(p.begin(), p.end());
    std::vector<int32_t>      kept;
    for (size_t i = 0; i < ids.size(); i++) {
        if (!(p[i] < min_p * max)) {
            kept.push_back(ids[i]);
        }
    }
    return kept;
}

}  // namespace

void check_sampling_options(const SamplingOptions & o) {
    if (!(o.temperature >= 0.0) || std::isinf(o.temperature)) {
        throw InputError(fmt::format("temperature {} is out of range: give 0 (greedy) or a positive number",
                                     o.temperature));
    }
    if (o.top_k < 0) {
        throw InputError(fmt::format("top-k {} is out of range: give 0 (off) or a positive count", o.top_k));
    }
    if (!(o.top_p > 0.0 && o.top_p <= 1.0)) {
        throw InputError(fmt::format("top-p {} is out of range: it must be in (0, 1] (1 = off)", o.top_p));
    }
    if (!(o.min_p >= 0.0 && o.min_p <= 1.0)) {
        throw InputError(fmt::format("min-p {} is out of range: it must be in [0, 1] (0 = off)", o.min_p));
    }
}

int32_t argmax_token(const float * logits, int V) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

TokenDistribution sampling_distribution(const float * logits, int V, const SamplingOptions & options) {
    std::vector<double>  x(V);
    std::vector<int32_t> ids;
    ids.reserve(V);
    for (int32_t i = 0; i < V; i++) {
        x[i] = (double) logits[i] / options.temperature;
        if (x[i] > -std::numeric_limits<double>::infinity()) {  // a -inf logit can never be drawn
            ids.push_back(i);
        }
    }
    if (ids.empty()) {
        throw RuntimeFailure("every logit is -inf or NaN: nothing to sample");
    }
    ids = top_k_filter(x, std::move(ids), options.top_k);
    ids = top_p_filter(x, std::move(ids), options.top_p);
    ids = min_p_filter(x, std::move(ids), options.min_p);
    TokenDistribution dist;
    dist.probs = softmax_over(x, ids);
    dist.ids   = std::move(ids);
    return dist;
}

int32_t draw_token(const TokenDistribution & dist, uint64_t seed, uint64_t sequence, uint64_t step) {
    const double u      = (double) (hash_u64(seed, sequence, step) >> 11) * 0x1p-53;  // [0, 1)
    double       total  = 0;
    for (double p : dist.probs) {
        total += p;
    }
    const double target = u * total;  // total is 1 up to rounding
    double       cum    = 0;
    int32_t      last   = dist.ids.front();
    for (size_t i = 0; i < dist.ids.size(); i++) {
        if (dist.probs[i] > 0) {
            cum += dist.probs[i];
            last = dist.ids[i];
            if (target < cum) {
                return last;
            }
        }
    }
    return last;  // rounding left target at the very top
}

int32_t choose_token(const float * logits, int V, const SamplingOptions & options, uint64_t sequence,
                     uint64_t step) {
    if (options.temperature == 0.0) {
        return argmax_token(logits, V);
    }
    return draw_token(sampling_distribution(logits, V, options), options.seed, sequence, step);
}

}  // namespace paft
