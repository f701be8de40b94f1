// ggml's block formats (layouts in quants.h), written and read by our own code.
//
// Quantizers. Q8_0, Q4_0 and Q5_0 take llama.cpp's reference steps (the same float operations in
// the same order), so they give llama.cpp's bytes. Q4_K and Q6_K choose their scales by our own
// design (any choice is a valid file: llama.cpp only reads them):
//   Q4_K  each 32-value sub-block fits x ~ s*q - m (q in 0..15, s, m >= 0) by a few rounds of
//         "assign each value its nearest level, then refit s and m by least squares", starting
//         from the sub-block's [min(0, min x), max x]; the 8 scales and 8 mins become 6-bit
//         integers against d = max s / 63 and dmin = max m / 63 (as stored: halves rounded
//         up); each sub-block then tries its two integers +-1 and keeps the pair with the least
//         squared error, and every value gets its nearest level under the final, stored scales.
//   Q6_K  each 16-value sub-block starts from s = (its largest-magnitude value) / -32 and refits
//         s by least squares the same way; the 16 scales become int8 against d = max|s| / 127
//         (a half rounded up), each tries +-1, and every value gets its nearest level under the
//         stored scales.
// The rounds stop as soon as a round does not lower the squared error, so each sub-block costs
// a few passes over its values: O(n) with a small constant.
//
// Non-finite input (NaN, Inf) gives bytes that are unspecified but safe: every float-to-int
// conversion is clamped first (NaN clamps to the low end) and every loop has a bounded trip
// count, so there is no undefined behaviour and no crash. Callers are expected to refuse such
// tensors first (the GGUF exporter names the tensor). F16 and BF16 keep NaN and Inf as such.
//
// Determinism: no fused multiply-add contraction in this file (-ffp-contract=off, CMakeLists.txt),
// since whether a*b+c is fused depends on the machine's instruction set under -march=native and
// would change rounding at level boundaries; sums run in a fixed order. Nothing depends on threads.
#include "tensor/quants.h"

#include "tensor/half.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>


namespace paft {

namespace {

static_assert(std::endian::native == std::endian::little, "F32 rows are copied as they are");

constexpr int kQK  = 32;   // values per block of Q8_0, Q4_0, Q5_0
constexpr int kQKK = 256;  // values per super-block of Q4_K, Q6_K

void put_u16(uint8_t * p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v & 0xFF);
    p[1] = static_cast<uint8_t>(v >> 8);
}

uint16_t get_u16(const uint8_t * p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

float get_f16(const uint8_t * p) { return f16_to_f32(get_u16(p)); }

// f16 bits of the smallest half >= v, for a K-quant's super-block scale v >= 0: rounding up keeps
// every sub-block's integer scale in range (rounding d down would push the largest past 63 or
// 127 and clip its values, which matters where d is a subnormal half, below 6.1e-5, with few
// significant bits). Saturates at the largest finite half (65504) instead of Inf, and NaN gives 0.
uint16_t f16_round_up(float v) {
    if (!(v > 0)) return 0;
    uint16_t h = f32_to_f16(v);
    if (h >= 0x7C00u) return 0x7BFFu;
    if (f16_to_f32(h) < v && h < 0x7BFFu) ++h;  // the next half up (also across the subnormal/normal boundary)
    return h;
}

// v clamped to [lo, hi]; a NaN gives lo (std::max(lo, v) returns lo when v is NaN).
inline float clampf(float v, float lo, float hi) { return std::min(std::max(lo, v), hi); }

// round(v) (halves away from zero, as roundf) clamped to [lo, hi], NaN to lo.
inline int round_clamped(float v, int lo, int hi) {
    return static_cast<int>(std::round(clampf(v, static_cast<float>(lo), static_cast<float>(hi))));
}

// The first value of largest magnitude, with its sign (0 for an all-zero or all-NaN block).
float signed_absmax(const float * x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; ++j) {
        const float a = std::fabs(x[j]);
        if (amax < a) {
            amax = a;
            max  = x[j];
        }
    }
    return max;
}

// ---- Q8_0, Q4_0, Q5_0: llama.cpp's reference quantizers ----

void quantize_q8_0(const float * x, uint8_t * y) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d  = amax / 127;
    const float id = d != 0 ? 1 / d : 0;
    put_u16(y, f32_to_f16(d));
    for (int j = 0; j < kQK; ++j)
        y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(round_clamped(x[j] * id, -127, 127)));
}

void dequantize_q8_0(const uint8_t * y, float * x) {
    const float d = get_f16(y);
    for (int j = 0; j < kQK; ++j) x[j] = static_cast<float>(static_cast<int8_t>(y[2 + j])) * d;
}

// int(v) clamped to [0, nmax], for Q4_0's min(15, int(x/d + 8.5)) and Q5_0's min(31, int(x/d + 16.5)):
// v >= 0 for finite input, so clamping before the cast truncates toward zero exactly as
// llama.cpp's int cast then min do, and a NaN cannot reach the cast.
inline int truncate_clamped(float v, int nmax) { return static_cast<int>(clampf(v, 0.0f, static_cast<float>(nmax))); }

void quantize_q4_0(const float * x, uint8_t * y) {
    const float max = signed_absmax(x, kQK);
    const float d   = max / -8;
    const float id  = d != 0 ? 1 / d : 0;
    put_u16(y, f32_to_f16(d));
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = truncate_clamped(x[j] * id + 8.5f, 15);
        const int q1 = truncate_clamped(x[j + kQK / 2] * id + 8.5f, 15);
        y[2 + j]     = static_cast<uint8_t>(q0 | (q1 << 4));
    }
}

void dequantize_q4_0(const uint8_t * y, float * x) {
    const float d = get_f16(y);
    for (int j = 0; j < kQK / 2; ++j) {
        x[j]           = static_cast<float>((y[2 + j] & 0x0F) - 8) * d;
        x[j + kQK / 2] = static_cast<float>((y[2 + j] >> 4) - 8) * d;
    }
}

void quantize_q5_0(const float * x, uint8_t * y) {
    const float max = signed_absmax(x, kQK);
    const float d   = max / -16;
    const float id  = d != 0 ? 1 / d : 0;
    put_u16(y, f32_to_f16(d));
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = truncate_clamped(x[j] * id + 16.5f, 31);
        const int q1 = truncate_clamped(x[j + kQK / 2] * id + 16.5f, 31);
        y[6 + j]     = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= static_cast<uint32_t>(q0 >> 4) << j;
        qh |= static_cast<uint32_t>(q1 >> 4) << (j + kQK / 2);
    }
    for (int b = 0; b < 4; ++b) y[2 + b] = static_cast<uint8_t>(qh >> (8 * b));
}

void dequantize_q5_0(const uint8_t * y, float * x) {
    const float    d  = get_f16(y);
    const uint32_t qh = static_cast<uint32_t>(y[2]) | (static_cast<uint32_t>(y[3]) << 8) |
                        (static_cast<uint32_t>(y[4]) << 16) | (static_cast<uint32_t>(y[5]) << 24);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0   = (y[6 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
        const int q1   = (y[6 + j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1u) << 4);
        x[j]           = static_cast<float>(q0 - 16) * d;
        x[j + kQK / 2] = static_cast<float>(q1 - 16) * d;
    }
}

// ---- Q4_K, Q6_K: our own scale choice ----

constexpr int kQ4KSub   = 32;  // values per Q4_K sub-block
constexpr int kQ4KIters = 4;   // least-squares refits per sub-block, at most
constexpr int kQ6KSub   = 16;  // values per Q6_K sub-block
constexpr int kQ6KIters = 3;

// Sum of v[0..n) (n a multiple of 8) in a fixed order: 8 interleaved partial sums, then those
// pairwise. The order is spelled out, so vectorizing the loop cannot change the result.
float fixed_sum(const float * v, int n) {
    float acc[8] = {};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += v[i + k];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// Nearest levels q[i] in 0..15 of a Q4_K sub-block x under s*q - m (all 0, at -m, when s is 0),
// with the squared errors e[i]; returns their sum.
float q4_assign(const float * x, float s, float m, int * q, float * e) {
    const float is = s > 0 ? 1 / s : 0;
    for (int i = 0; i < kQ4KSub; ++i) {
        q[i]             = round_clamped((x[i] + m) * is, 0, 15);
        const float diff = s * static_cast<float>(q[i]) - m - x[i];
        e[i]             = diff * diff;
    }
    return fixed_sum(e, kQ4KSub);
}

struct AffineFit {
    float scale = 0, min = 0;  // x ~ scale*q - min
};

// Fits a Q4_K sub-block by scale*q - min with q in 0..15 and scale, min >= 0 (the lowest level
// at or below zero, as llama.cpp's Q4_K has it): start from the grid over [min(0, min x), max x],
// then alternate nearest levels and a least-squares refit of (scale, min) while the error drops.
AffineFit fit_q4_sub(const float * x) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < kQ4KSub; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    lo = std::min(lo, 0.0f);
    if (!(hi > lo)) return {0, std::fabs(lo)};  // constant (or non-finite) sub-block
    const float  sx = fixed_sum(x, kQ4KSub);
    const double n  = kQ4KSub;

    AffineFit cur{(hi - lo) / 15, -lo}, best = cur;
    float     best_err = INFINITY;
    for (int it = 0; it <= kQ4KIters; ++it) {
        int         q[kQ4KSub];
        float       e[kQ4KSub], qx[kQ4KSub];
        const float err = q4_assign(x, cur.scale, cur.min, q, e);
        if (!(err < best_err)) break;
        best_err = err;
        best     = cur;
        if (it == kQ4KIters) break;
        int sq = 0, sqq = 0;
        for (int i = 0; i < kQ4KSub; ++i) {
            sq += q[i];
            sqq += q[i] * q[i];
            qx[i] = static_cast<float>(q[i]) * x[i];
        }
        const double sqx = fixed_sum(qx, kQ4KSub);
        // Least squares of x ~ scale*q + b over these q; b = -min must stay <= 0.
        const double det = n * sqq - static_cast<double>(sq) * sq;
        if (!(det > 0)) break;  // every value at one level: nothing to refit
        double scale = (n * sqx - sq * static_cast<double>(sx)) / det;
        double b     = (sqq * static_cast<double>(sx) - sq * sqx) / det;
        if (b > 0) {
            b     = 0;
            scale = sqx / sqq;
        }
        if (!(scale > 0)) break;
        cur = {static_cast<float>(scale), static_cast<float>(-b)};
    }
    return best;
}

void quantize_q4_k(const float * x, uint8_t * y) {
    constexpr int nsub = kQKK / kQ4KSub;
    AffineFit     fit[nsub];
    float         max_scale = 0, max_min = 0;
    for (int j = 0; j < nsub; ++j) {
        fit[j]    = fit_q4_sub(x + j * kQ4KSub);
        max_scale = std::max(max_scale, fit[j].scale);
        max_min   = std::max(max_min, fit[j].min);
    }
    const uint16_t dh = f16_round_up(max_scale / 63), mh = f16_round_up(max_min / 63);
    const float    d = f16_to_f32(dh), dmin = f16_to_f32(mh);
    put_u16(y, dh);
    put_u16(y + 2, mh);

    // Each sub-block's 6-bit scale ls and min lm: the nearest integers to its fit under the stored
    // d and dmin, or a +-1 neighbour pair where that has less squared error; its values then take
    // their nearest levels under the pair chosen.
    int     ls[nsub], lm[nsub];
    uint8_t q[kQKK];
    for (int j = 0; j < nsub; ++j) {
        const float * xs  = x + j * kQ4KSub;
        const int     ls0 = d > 0 ? round_clamped(fit[j].scale / d, 0, 63) : 0;
        const int     lm0 = dmin > 0 ? round_clamped(fit[j].min / dmin, 0, 63) : 0;
        int           qq[kQ4KSub], best_q[kQ4KSub];
        float         e[kQ4KSub];
        float         best = q4_assign(xs, d * static_cast<float>(ls0), dmin * static_cast<float>(lm0), best_q, e);
        ls[j]              = ls0;
        lm[j]              = lm0;
        for (int a = std::max(ls0 - 1, 0); a <= std::min(ls0 + 1, 63); ++a) {
            for (int b = std::max(lm0 - 1, 0); b <= std::min(lm0 + 1, 63); ++b) {
                if (a == ls0 && b == lm0) continue;
                const float err = q4_assign(xs, d * static_cast<float>(a), dmin * static_cast<float>(b), qq, e);
                if (err < best) {
                    best  = err;
                    ls[j] = a;
                    lm[j] = b;
                    std::copy(qq, qq + kQ4KSub, best_q);
                }
            }
        }
        for (int i = 0; i < kQ4KSub; ++i) q[j * kQ4KSub + i] = static_cast<uint8_t>(best_q[i]);
    }

    // 6-bit packing: sub-blocks 0..3 in the low 6 bits of scales[j] (scale) and scales[j+4]
    // (min); 4..7 in the nibbles of scales[j+4] with their top 2 bits in the high bits of
    // scales[j-4] (scale) and scales[j] (min).
    uint8_t * scales = y + 4;
    for (int j = 0; j < 4; ++j) {
        scales[j]     = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
        scales[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
        scales[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0x0F) | ((lm[j + 4] & 0x0F) << 4));
    }
    // Values: each group of 64 in 32 bytes, its first 32 in the low nibbles.
    uint8_t * qs = y + 16;
    for (int g = 0; g < kQKK / 64; ++g)
        for (int l = 0; l < 32; ++l) qs[32 * g + l] = static_cast<uint8_t>(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
}

void dequantize_q4_k(const uint8_t * y, float * x) {
    const float     d = get_f16(y), dmin = get_f16(y + 2);
    const uint8_t * scales = y + 4;
    const uint8_t * qs     = y + 16;
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        if (j < 4) {
            sc = scales[j] & 63;
            m  = scales[j + 4] & 63;
        } else {
            sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
            m  = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        }
        const float     d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
        const uint8_t * q  = qs + 32 * (j / 2);
        const int       sh = 4 * (j % 2);  // even sub-blocks in the low nibbles, odd in the high
        for (int l = 0; l < 32; ++l) x[32 * j + l] = d1 * static_cast<float>((q[l] >> sh) & 0x0F) - m1;
    }
}

// Nearest levels q[i] in -32..31 of a Q6_K sub-block x under s*q (all 0 when s is 0), with the
// squared errors e[i]; returns their sum.
float q6_assign(const float * x, float s, int * q, float * e) {
    const float is = s != 0 ? 1 / s : 0;
    for (int i = 0; i < kQ6KSub; ++i) {
        q[i]             = round_clamped(x[i] * is, -32, 31);
        const float diff = s * static_cast<float>(q[i]) - x[i];
        e[i]             = diff * diff;
    }
    return fixed_sum(e, kQ6KSub);
}

// Fits a Q6_K sub-block by s*q with q in -32..31: start with its largest-magnitude value at
// q = -32, then alternate nearest levels and the least-squares s = sum(q x) / sum(q q) while the
// error drops.
float fit_q6_sub(const float * x) {
    const float max = signed_absmax(x, kQ6KSub);
    if (max == 0) return 0;
    float s = max / -32, best = s, best_err = INFINITY;
    for (int it = 0; it <= kQ6KIters; ++it) {
        int         q[kQ6KSub];
        float       e[kQ6KSub], qx[kQ6KSub];
        const float err = q6_assign(x, s, q, e);
        if (!(err < best_err)) break;
        best_err = err;
        best     = s;
        if (it == kQ6KIters) break;
        int sqq = 0;
        for (int i = 0; i < kQ6KSub; ++i) {
            sqq += q[i] * q[i];
            qx[i] = static_cast<float>(q[i]) * x[i];
        }
        if (sqq == 0) break;
        const float next = fixed_sum(qx, kQ6KSub) / static_cast<float>(sqq);
        if (!(next != 0) || next == s) break;
        s = next;
    }
    return best;
}

void quantize_q6_k(const float * x, uint8_t * y) {
    constexpr int nsub = kQKK / kQ6KSub;
    float         s[nsub];
    float         smax = 0;
    for (int j = 0; j < nsub; ++j) {
        s[j] = fit_q6_sub(x + j * kQ6KSub);
        smax = std::max(smax, std::fabs(s[j]));
    }
    const uint16_t dh = f16_round_up(smax / 127);
    const float    d  = f16_to_f32(dh);

    // Each sub-block's int8 scale: the nearest integer to its fit under the stored d, or a +-1
    // neighbour where that has less squared error; its values take their nearest levels under it.
    int8_t  sc[nsub];
    uint8_t q[kQKK];
    for (int j = 0; j < nsub; ++j) {
        const float * xs  = x + j * kQ6KSub;
        const int     sc0 = d > 0 ? round_clamped(s[j] / d, -127, 127) : 0;
        int           qq[kQ6KSub], best_q[kQ6KSub];
        float         e[kQ6KSub];
        float         best = q6_assign(xs, d * static_cast<float>(sc0), best_q, e);
        sc[j]              = static_cast<int8_t>(sc0);
        for (int a = std::max(sc0 - 1, -127); a <= std::min(sc0 + 1, 127); a += 2) {
            const float err = q6_assign(xs, d * static_cast<float>(a), qq, e);
            if (err < best) {
                best  = err;
                sc[j] = static_cast<int8_t>(a);
                std::copy(qq, qq + kQ6KSub, best_q);
            }
        }
        for (int i = 0; i < kQ6KSub; ++i) q[j * kQ6KSub + i] = static_cast<uint8_t>(best_q[i] + 32);
    }

    // Per half of 128 values: ql gets 64 bytes, qh 32 bytes; value l (0..31) of each quarter:
    // quarters 0 and 2 share ql[l] (low, high nibble), 1 and 3 share ql[l+32]; qh[l] holds the
    // four values' top 2 bits at shifts 0, 2, 4, 6 (quarters 0, 1, 2, 3).
    uint8_t * ql = y;
    uint8_t * qh = y + 128;
    for (int h = 0; h < 2; ++h) {
        const uint8_t * qv = q + 128 * h;
        for (int l = 0; l < 32; ++l) {
            const int q1 = qv[l], q2 = qv[l + 32], q3 = qv[l + 64], q4 = qv[l + 96];
            ql[64 * h + l]      = static_cast<uint8_t>((q1 & 0x0F) | ((q3 & 0x0F) << 4));
            ql[64 * h + l + 32] = static_cast<uint8_t>((q2 & 0x0F) | ((q4 & 0x0F) << 4));
            qh[32 * h + l]      = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
    for (int j = 0; j < nsub; ++j) y[192 + j] = static_cast<uint8_t>(sc[j]);
    put_u16(y + 208, dh);
}

void dequantize_q6_k(const uint8_t * y, float * x) {
    const float d = get_f16(y + 208);
    for (int h = 0; h < 2; ++h) {
        const uint8_t * ql = y + 64 * h;
        const uint8_t * qh = y + 128 + 32 * h;
        const int8_t *  sc = reinterpret_cast<const int8_t *>(y + 192 + 8 * h);
        float *         xx = x + 128 * h;
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            xx[l]        = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
            xx[l + 32]   = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            xx[l + 64]   = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            xx[l + 96]   = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
    }
}

// ---- the registry: one row of data per type (llama.cpp's type traits) ----

// n values (whole blocks) of a row to bytes, and back.
using QuantizeRow   = void (*)(const float * x, uint8_t * y, int64_t n);
using DequantizeRow = void (*)(const uint8_t * y, float * x, int64_t n);

template <void (*Block)(const float *, uint8_t *), int64_t Size, size_t Bytes>
void quantize_blocks(const float * x, uint8_t * y, int64_t n) {
    for (int64_t b = 0; b < n / Size; ++b) Block(x + b * Size, y + b * Bytes);
}
template <void (*Block)(const uint8_t *, float *), int64_t Size, size_t Bytes>
void dequantize_blocks(const uint8_t * y, float * x, int64_t n) {
    for (int64_t b = 0; b < n / Size; ++b) Block(y + b * Bytes, x + b * Size);
}

// Floats: little-endian hosts, so f32 is a copy.
void f32_row(const float * x, uint8_t * y, int64_t n) { std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float)); }
void f32_row_back(const uint8_t * y, float * x, int64_t n) { std::memcpy(x, y, static_cast<size_t>(n) * sizeof(float)); }
void f16_row(const float * x, uint8_t * y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) put_u16(y + 2 * i, f32_to_f16(x[i]));
}
void f16_row_back(const uint8_t * y, float * x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = f16_to_f32(get_u16(y + 2 * i));
}
void bf16_row(const float * x, uint8_t * y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) put_u16(y + 2 * i, f32_to_bf16(x[i]));
}
void bf16_row_back(const uint8_t * y, float * x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = bf16_to_f32(get_u16(y + 2 * i));
}

struct TypeTraits {
    GgmlType      type;
    const char *  name;
    int64_t       block_size;   // values per block
    size_t        block_bytes;  // bytes per block
    QuantizeRow   quantize;
    DequantizeRow dequantize;
};

#define PAFT_BLOCK_TYPE(T, NAME, SIZE, BYTES, FN) \
    {GgmlType::T, NAME, SIZE, BYTES, quantize_blocks<quantize_##FN, SIZE, BYTES>, dequantize_blocks<dequantize_##FN, SIZE, BYTES>}
constexpr TypeTraits kTypes[] = {
    {GgmlType::F32, "f32", 1, 4, f32_row, f32_row_back},
    {GgmlType::F16, "f16", 1, 2, f16_row, f16_row_back},
    PAFT_BLOCK_TYPE(Q4_0, "q4_0", kQK, 18, q4_0),
    PAFT_BLOCK_TYPE(Q5_0, "q5_0", kQK, 22, q5_0),
    PAFT_BLOCK_TYPE(Q8_0, "q8_0", kQK, 34, q8_0),
    PAFT_BLOCK_TYPE(Q4_K, "q4_K", kQKK, 144, q4_k),
    PAFT_BLOCK_TYPE(Q6_K, "q6_K", kQKK, 210, q6_k),
    {GgmlType::BF16, "bf16", 1, 2, bf16_row, bf16_row_back},
};
#undef PAFT_BLOCK_TYPE

const TypeTraits & traits(GgmlType type) {
    for (const TypeTraits & t : kTypes)
        if (t.type == type) return t;
    throw std::invalid_argument(fmt::format("ggml type {} is not supported", static_cast<uint32_t>(type)));
}

void check_row(GgmlType type, int64_t rows, int64_t n) {
    const TypeTraits & t = traits(type);
    if (rows < 0 || n < 0 || n % t.block_size != 0)
        throw std::invalid_argument(fmt::format("{} x {} values are not rows of whole {} blocks of {} values", rows, n,
                                                t.name, t.block_size));
}

}  // namespace

const char * ggml_type_name(GgmlType type) { return traits(type).name; }

std::optional<GgmlType> ggml_type_from_id(uint32_t id) {
    for (const TypeTraits & t : kTypes)
        if (static_cast<uint32_t>(t.type) == id) return t.type;
    return std::nullopt;
}

int64_t ggml_block_size(GgmlType type) { return traits(type).block_size; }

size_t ggml_block_bytes(GgmlType type) { return traits(type).block_bytes; }

size_t ggml_row_bytes(GgmlType type, int64_t n) {
    check_row(type, 1, n);
    const TypeTraits & t = traits(type);
    return static_cast<size_t>(n / t.block_size) * t.block_bytes;
}

bool ggml_is_quantized(GgmlType type) { return traits(type).block_size > 1; }

// Rows are whole blocks, so no block straddles two rows: the rows are one run of values.
void quantize_rows(GgmlType type, const float * src, int64_t rows, int64_t n, uint8_t * dst) {
    check_row(type, rows, n);
    traits(type).quantize(src, dst, rows * n);
}

void dequantize_rows(GgmlType type, const uint8_t * src, int64_t rows, int64_t n, float * dst) {
    check_row(type, rows, n);
    traits(type).dequantize(src, dst, rows * n);
}

}  // namespace paft
