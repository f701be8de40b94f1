// f32 <-> bf16/f16 conversions, rounding to nearest even as torch's .to() does.
#include "tensor/half.h"

#include <cmath>

namespace paft {

namespace {

// value >> shift, rounded to nearest even; 1 <= shift <= 31.
uint32_t shift_right_rne(uint32_t value, int shift) {
    const uint32_t kept = value >> shift;
    const uint32_t rest = value & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
}

}  // namespace

uint16_t f32_to_bf16(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    // NaN: keep the sign and top payload bits and set the quiet bit, so that dropping the low
    // payload bits cannot turn it into Inf.
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    // Round to nearest even: add just under half a bf16 ulp, plus one when the kept part is odd.
    // A carry into the exponent is correct, up to rounding the largest floats to Inf.
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign     = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1Fu;
    const uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));  // Inf, NaN
    if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal: m x 2^-24, exact
    return sign ? -magnitude : magnitude;
}

uint16_t f32_to_f16(float f) {
    const uint32_t u    = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a    = u & 0x7FFFFFFFu;  // |f| as bits
    if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN: quiet, top payload kept
    if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // |f| >= 65520, halfway past 65504 (odd): Inf
    if (a >= 0x38800000u) {  // |f| >= 2^-14: normal f16; rebias the exponent 127 -> 15, round to 10 bits
        const uint32_t rounded = (a + 0xFFFu + ((a >> 13) & 1u)) >> 13;
        return static_cast<uint16_t>(sign | (rounded - ((127 - 15) << 10)));
    }
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);  // |f| < 2^-25, below half the smallest subnormal: zero
    // Subnormal f16 m x 2^-24 with m = |f| x 2^24 = (1.mantissa x 2^23) x 2^(e - 126) for the
    // biased f32 exponent e in [102, 112], so the shift is 126 - e in [14, 24].
    const uint32_t mantissa = (a & 0x7FFFFFu) | 0x800000u;
    const int      shift    = 126 - static_cast<int>(a >> 23);
    return static_cast<uint16_t>(sign | shift_right_rne(mantissa, shift));
}

}  // namespace paft
