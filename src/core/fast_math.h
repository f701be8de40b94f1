// Vectorisable exp for the element-wise kernels (softmax, SiLU, cross-entropy).
//
// glibc's expf is not vectorised without -ffast-math; at vocabulary 32k the log-softmax alone
// needs ~32k exponentials per token, as much time as the LM-head product. This version reduces
// x = k*ln2 + r with |r| <= ln2/2 and evaluates the Cephes minimax polynomial for e^r (relative
// error about 1 ulp), then scales by 2^k through the exponent bits. Branch-free, so loops over
// it vectorise with AVX2 (given -fno-trapping-math, which lets GCC turn the clamp into min/max).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

namespace paft {

inline float fast_exp(float x) {
    // Clamp to the range where e^x is a normal float; below it the result flushes to ~0.
    x       = std::min(std::max(x, -87.0f), 88.0f);
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2): 1.5*2^23 trick
    float r = x - k * 0.693359375f;                               // ln 2, high part (exact)
    r       = r - k * -2.12194440e-4f;                            // ln 2, low part
    float p = 1.9875691500e-4f;
    p       = p * r + 1.3981999507e-3f;
    p       = p * r + 8.3334519073e-3f;
    p       = p * r + 4.1665795894e-2f;
    p       = p * r + 1.6666665459e-1f;
    p       = p * r + 5.0000001201e-1f;
    p       = p * r * r + r + 1.0f;
    int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k
    return p * std::bit_cast<float>(bits);
}

}  // namespace paft
