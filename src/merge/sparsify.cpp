#include "merge/sparsify.h"

#include "core/error.h"
#include "core/random.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

namespace paft {
namespace {

// FNV-1a, 64 bits: a tensor name's contribution to its DARE stream.
uint64_t fnv1a(const std::string & s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (unsigned char c : s) {
        h = (h ^ c) * 0x100000001B3ull;
    }
    return h;
}

}  // namespace

Rescale parse_rescale(const std::string & name) {
    if (name == "none") {
        return Rescale::none;
    }
    if (name == "l1") {
        return Rescale::l1;
    }
    if (name == "density") {
        return Rescale::density;
    }
    throw InputError(fmt::format("rescale: unknown value '{}' (known: none, l1, density)", name));
}

const char * rescale_name(Rescale rescale) {
    switch (rescale) {
        case Rescale::l1: return "l1";
        case Rescale::density: return "density";
        default: return "none";
    }
}

void magnitude_trim(float * delta, size_t n, size_t k, std::vector<float> & scratch) {
    if (k >= n) {
        return;
    }
    // The k-th largest magnitude by a partial order (O(n)); a full sort is not needed.
    scratch.resize(n);
    for (size_t j = 0; j < n; j++) {
        scratch[j] = std::fabs(delta[j]);
    }
    std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
    const float threshold = scratch[k - 1];
    size_t      above     = 0;
    for (size_t j = 0; j < n; j++) {
        above += std::fabs(delta[j]) > threshold ? 1 : 0;
    }
    // Entries equal to the threshold fill the remaining places in index order.
    size_t ties_left = k - above;
    for (size_t j = 0; j < n; j++) {
        const float m = std::fabs(delta[j]);
        if (m > threshold) {
            continue;
        }
        if (m == threshold && ties_left > 0) {
            ties_left--;
            continue;
        }
        delta[j] = 0.0f;
    }
}

uint64_t dare_stream(uint64_t seed, const std::string & tensor, size_t model) {
    return hash_u64(seed, fnv1a(tensor), (uint64_t) model);
}

bool dare_keep(uint64_t stream, size_t index, double density) {
    const double u = (double) (hash_u64(stream, (uint64_t) index, 0) >> 11) * (1.0 / 9007199254740992.0);
    return u < density;
}

void dare_drop(float * delta, size_t n, double density, uint64_t stream) {
    for (size_t j = 0; j < n; j++) {
        if (!dare_keep(stream, j, density)) {
            delta[j] = 0.0f;
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
