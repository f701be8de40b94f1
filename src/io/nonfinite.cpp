#include "io/nonfinite.h"

#include "core/error.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <cstring>

namespace paft {

namespace {

std::atomic<bool> g_allowed{false};

// Exponent bits all ones (Inf or NaN) in each element of `Bits` with the given mask.
template <typename Bits> size_t count_all_ones(const uint8_t * bytes, size_t n, Bits exponent_mask) {
    size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (n >= (1u << 20))
    for (size_t i = 0; i < n; i++) {
        Bits value;
        std::memcpy(&value, bytes + i * sizeof(Bits), sizeof(Bits));
        count += (value & exponent_mask) == exponent_mask;
    }
    return count;
}

}  // namespace

void set_nonfinite_allowed(bool allowed) { g_allowed = allowed; }
bool nonfinite_allowed() { return g_allowed; }

size_t count_nonfinite(const float * values, size_t n) {
    return count_all_ones<uint32_t>(reinterpret_cast<const uint8_t *>(values), n, 0x7F800000u);
}

size_t count_nonfinite(DType dtype, std::span<const uint8_t> bytes) {
    switch (dtype) {
        case DType::F32: return count_all_ones<uint32_t>(bytes.data(), bytes.size() / 4, 0x7F800000u);
        case DType::F16: return count_all_ones<uint16_t>(bytes.data(), bytes.size() / 2, 0x7C00u);
        case DType::BF16: return count_all_ones<uint16_t>(bytes.data(), bytes.size() / 2, 0x7F80u);
        case DType::F64: return count_all_ones<uint64_t>(bytes.data(), bytes.size() / 8, 0x7FF0000000000000ull);
        default: return 0;
    }
}

void check_finite_input(size_t count, const std::string & source, const std::string & tensor) {
    if (count > 0 && !nonfinite_allowed()) {
        throw InputError(fmt::format("{}: tensor '{}' has {} non-finite value{} (NaN or Inf); a broken export or a "
                                     "diverged run? (--allow-nonfinite reads it anyway)",
                                     source, tensor, count, count == 1 ? "" : "s"));
    }
}

void check_finite_result(size_t count, const std::string & what) {
    if (count > 0 && !nonfinite_allowed()) {
        throw RuntimeFailure(fmt::format("{}: {} non-finite value{} (NaN or Inf); nothing was written "
                                         "(--allow-nonfinite writes it anyway)",
                                         what, count, count == 1 ? "" : "s"));
    }
}

}  // namespace paft
