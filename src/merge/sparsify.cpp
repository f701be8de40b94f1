#include "merge/sparsify.h"

#include "core/error.h"
#include "core/random.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>

namespace paft {
namespace {

// FNV-1a, 64 bits: a tensor name's contribution to its random stream.
uint64_t fnv1a(const std::string & s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (unsigned char c : s) {
        h = (h ^ c) * 0x100000001B3ull;
    }
    return h;
}

}  // namespace

Rescale parse_rescale(const std::string & name) {
    if (name == "none" || name == "false") {
        return Rescale::none;
    }
    if (name == "l1" || name == "true") {
        return Rescale::l1;
    }
    if (name == "density") {
        return Rescale::density;
    }
    throw InputError(fmt::format("rescale: unknown value '{}' (known: true, false, l1, density, none)", name));
}

const char * rescale_name(Rescale rescale) {
    switch (rescale) {
        case Rescale::l1: return "l1";
        case Rescale::density: return "density";
        default: return "none";
    }
}

TopCut top_cut(const float * d, size_t n, size_t k, std::vector<float> & scratch) {
    if (k == 0) {
        return {};
    }
    k = std::min(k, n);
    // The k-th largest magnitude by a partial order (O(n)); a full sort is not needed.
    scratch.resize(n);
    for (size_t j = 0; j < n; j++) {
        scratch[j] = std::fabs(d[j]);
    }
    std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
    const float threshold = scratch[k - 1];
    size_t      above     = 0;
    for (size_t j = 0; j < n; j++) {
        above += std::fabs(d[j]) > threshold ? 1 : 0;
    }
    return {threshold, k - above};
}

void apply_cuts(float * d, size_t n, const TopCut & keep, const TopCut & drop) {
    size_t keep_equal_seen = 0, drop_equal_seen = 0;
    for (size_t j = 0; j < n; j++) {
        const float m       = std::fabs(d[j]);
        const bool  in_keep = m > keep.threshold || (m == keep.threshold && keep_equal_seen++ < keep.equal_kept);
        const bool  in_drop = m > drop.threshold || (m == drop.threshold && drop_equal_seen++ < drop.equal_kept);
        if (!in_keep || in_drop) {
            d[j] = 0.0f;
        }
    }
}

void magnitude_trim(float * delta, size_t n, size_t k, std::vector<float> & scratch) {
    if (k >= n) {
        return;
    }
    apply_cuts(delta, n, top_cut(delta, n, k, scratch), TopCut{});
}

OutlierCounts outlier_counts(size_t n, double density, double gamma) {
    // Python's int() of the products, as mergekit computes them.
    const size_t n_keep = std::min(n, (size_t) (density * (double) n));
    size_t       n_top  = (size_t) (gamma * (double) n);
    if (n_top + n_keep > n) {
        n_top = n - n_keep;  // mergekit: n_bot < 0 -> n_top += n_bot, n_bot = 0
    }
    return {n_top, n_keep};
}

uint64_t dare_stream(uint64_t seed, const std::string & tensor, size_t model) {
    return hash_u64(seed, fnv1a(tensor), (uint64_t) model);
}

bool dare_keep(uint64_t stream, size_t index, double probability) {
    const double u = (double) (hash_u64(stream, (uint64_t) index, 0) >> 11) * (1.0 / 9007199254740992.0);
    return u < probability;
}

void dare_drop(float * delta, size_t n, double density, uint64_t stream) {
    for (size_t j = 0; j < n; j++) {
        if (!dare_keep(stream, j, density)) {
            delta[j] = 0.0f;
        }
    }
}

void della_probabilities(const float * delta, size_t rows, size_t cols, double density, double epsilon,
                         std::vector<double> & p, std::vector<uint64_t> & order) {
    p.resize(rows * cols);
    order.resize(cols);
    for (size_t r = 0; r < rows; r++) {
        const float * row = delta + r * cols;
        double *      pr  = p.data() + r * cols;
        if (cols == 1) {
            pr[0] = density;  // mergekit divides 0 by 0 here; the middle of the range instead
            continue;
        }
        // Descending rank (the common rule) as one integer sort: the high word orders larger
        // magnitudes first (|d|'s bit pattern orders like |d|), the low word is the index.
        for (size_t c = 0; c < cols; c++) {
            uint32_t bits;
            std::memcpy(&bits, &row[c], sizeof bits);
            order[c] = ((uint64_t) (0x7FFFFFFFu - (bits & 0x7FFFFFFFu)) << 32) | (uint64_t) c;
        }
        std::sort(order.begin(), order.end());
        for (size_t q = 0; q < cols; q++) {
            const double rank_norm = (double) (cols - 1 - q) / (double) (cols - 1);  // 0 = smallest magnitude
            pr[order[q] & 0xFFFFFFFFu] = (density - epsilon) + rank_norm * 2.0 * epsilon;
        }
    }
}

double rescale_factor(Rescale rescale, double density, double l1_before, double l1_after) {
    switch (rescale) {
        case Rescale::l1: return l1_before < 1e-7 || l1_after < 1e-7 ? 1.0 : l1_before / l1_after;
        case Rescale::density: return 1.0 / density;
        default: return 1.0;
    }
}

double l1_norm(const float * x, size_t n) {
    double s = 0.0;
    for (size_t j = 0; j < n; j++) {
        s += std::fabs((double) x[j]);
    }
    return s;
}

}  // namespace paft
