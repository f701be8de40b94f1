// Vectorisable exp for the element-wise kernels (softmax, SiLU, cross-entropy).
//
// glibc's expf is not vectorised without -ffast-math; at vocabulary 32k the log-softmax alone
// needs ~32k exponentials per token, as much time as the LM-head product. This version reduces
// x = k*ln2 + r with |r| <= ln2/2 and evaluates the Cephes minimax polynomial for e^r (relative
// error about 1 ulp), then scales by 2^k through the exponent bits. Branch-free, so loops over
// it vectorise with AVX2.
#pragma once

#include <cstdint>
#include <cstring>

namespace paft {

inline float fast_exp(float x) {
    // Clamp to the range where e^x is a normal float; below it the result flushes to ~0.
    x       = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);  // round(x / ln 2)
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
    float   scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

}  // namespace paft
