#include "core/q8_product.h"

#include "tensor/half.h"
#include "tensor/quants.h"

#include <omp.h>

#include "core/simd.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define PAFT_Q8_VNNI 1
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace paft {
namespace {

constexpr int64_t kBlock      = 32;           // values per q8_0 block
constexpr int64_t kBlockBytes = 2 + kBlock;  // f16 d, int8 q[32]

// x's rows as q8_0 blocks, [M, cols/32] of 34 bytes, and for every block -128 * (sum of its q):
// the kernel multiplies W's values offset to unsigned (w + 128) with x's signed ones, and each
// block's sum starts from this correction so that it ends as the plain sum of w * x.
struct QuantizedRows {
    std::vector<uint8_t> blocks;      // [M * nb * 34]
    std::vector<int32_t> correction;  // [M * nb]
    std::vector<float>   scale;       // [M * nb] the blocks' d as f32
    int64_t              nb = 0;      // blocks per row

    const uint8_t * block(int64_t m, int64_t b) const { return blocks.data() + (m * nb + b) * kBlockBytes; }
};

float half_at(const uint8_t * p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

void quantize_activations(const float * x, int64_t ldx, int64_t M, int64_t cols, QuantizedRows & q) {
    q.nb = cols / kBlock;
    q.blocks.resize((size_t) (M * q.nb * kBlockBytes));
    q.correction.resize((size_t) (M * q.nb));
    q.scale.resize((size_t) (M * q.nb));
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        uint8_t * row = q.blocks.data() + m * q.nb * kBlockBytes;
        quantize_rows(GgmlType::Q8_0, x + m * ldx, 1, cols, row);
        for (int64_t b = 0; b < q.nb; b++) {
            const int8_t * v   = reinterpret_cast<const int8_t *>(row + b * kBlockBytes + 2);
            int32_t        sum = 0;
            for (int k = 0; k < kBlock; k++) {
                sum += v[k];
            }
            q.correction[(size_t) (m * q.nb + b)] = -128 * sum;
            q.scale[(size_t) (m * q.nb + b)]      = half_at(row + b * kBlockBytes);
        }
    }
}

// One output: the blocks' integer dot products, each scaled by d_x * d_w and accumulated in block
// order with a fused multiply-add. The vector kernel below computes exactly these operations.
float dot_blocks(const QuantizedRows & q, int64_t m, const uint8_t * w_row) {
    float acc = 0.0f;
    for (int64_t b = 0; b < q.nb; b++) {
        const uint8_t * xb = q.block(m, b);
        const uint8_t * wb = w_row + b * kBlockBytes;
        const int8_t *  xv = reinterpret_cast<const int8_t *>(xb + 2);
        const int8_t *  wv = reinterpret_cast<const int8_t *>(wb + 2);
        int32_t         dot = 0;
        for (int k = 0; k < kBlock; k++) {
            dot += (int32_t) xv[k] * (int32_t) wv[k];
        }
        acc = std::fma((float) dot, half_at(wb) * q.scale[(size_t) (m * q.nb + b)], acc);
    }
    return acc;
}

void store(float * y, float acc, float beta) { *y = beta == 0.0f ? acc : std::fma(beta, *y, acc); }

// Measured with bench-weight-matmul (AMD EPYC Zen 5, 2 threads, 2026-12-07), ms for y = x·Wᵀ:
//                        M = 33                 M = 128                M = 512
//                   panels  q8xq8  ratio   panels  q8xq8  ratio   panels  q8xq8  ratio
//   [2048, 2048]     2.34   0.51   4.6      6.75   1.40   4.8     25.1    5.26   4.8
//   [5632, 2048]     6.78   1.87   3.6     18.2    4.14   4.4     67.0   13.1    5.1
//   [4096, 4096]    10.4    2.68   3.9     27.1    6.04   4.5    101.2   18.1    5.6
//   [14336, 4096]   34.9   10.0    3.5     91.8   20.4    4.5    345.6   61.7    5.6
// (700-970 GFLOP/s against the f32 sgemm's 160-185.) Of a single-threaded [2048, 5632] product
// at M = 128 (8.3 ms), packing W took 2.3 ms and quantizing x 0.6 ms: the repacking below is done
// per call, which keeps one copy of the weight, in llama.cpp's layout, for both ways.

// Rows of W per task: the unit of work and of the packed panel (a multiple of kGroup).
constexpr int64_t kTaskRows = 64;

#if PAFT_Q8_VNNI

// ---- AVX-512 VNNI ------------------------------------------------------------------------------
//
// W is repacked per task into groups of 16 rows. A group's block b is 8 vectors of 64 bytes,
// vector g holding in lane l the 4 values [4g, 4g+4) of row l's block, each plus 128 (unsigned),
// then the 16 rows' scales d as f32. One vpdpbusd of vector g with x's 4 values broadcast adds
// those 4 products to each of the 16 rows' sums, so a block's sum for 16 outputs takes 8 of them,
// stays an exact int32, and is scaled once: no horizontal sums, 11 instructions for 512
// multiply-adds. Each x row's block sum starts from its correction (-128 * sum of x's q).
constexpr int     kGroup      = 16;
constexpr int64_t kGroupBlock = 8 * 64 + 64;  // bytes of a group's block: values, then scales

// Packs W's rows [n0, n0 + count) (count <= kTaskRows) into dst, groups of 16 (missing rows: zero
// scales, so their lanes stay 0 and are never stored).
void pack_rows(const uint8_t * w, int64_t nb, int64_t n0, int64_t count, uint8_t * dst) {
    const int64_t row_bytes = nb * kBlockBytes;
    const __m512i lane      = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lane_rows = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int) row_bytes));  // byte offsets
    const __m512i offset    = _mm512_set1_epi8((char) 0x80);
    for (int64_t g0 = 0; g0 < count; g0 += kGroup) {
        const __mmask16 rows = (__mmask16) ((1u << std::min<int64_t>(kGroup, count - g0)) - 1);
        const uint8_t * base = w + (n0 + g0) * row_bytes;
        uint8_t *       out  = dst + (g0 / kGroup) * nb * kGroupBlock;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t * blk = base + b * kBlockBytes;
            for (int g = 0; g < 8; g++) {
                const __m512i v =
                    _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, lane_rows, blk + 2 + 4 * g, 1);
                // Missing rows would become 0x80 (128): harmless, as their scale is 0.
                _mm512_storeu_si512(out + b * kGroupBlock + g * 64, _mm512_xor_si512(v, offset));
            }
            const __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, lane_rows, blk, 1);
            _mm512_storeu_ps(out + b * kGroupBlock + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
        }
    }
}

// y[m0 + i, n0 + 16 j + l] for i < MR, j < NR, from the packed groups g[j] (`lanes` valid lanes in
// the last group).
template <int MR, int NR>
void tile(const QuantizedRows & q, int64_t m0, const uint8_t * const * g, int64_t nb, float beta, float * y,
          int64_t ldy, int64_t n0, int lanes_last) {
    __m512 acc[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            acc[i][j] = _mm512_setzero_ps();
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        __m512i sum[MR][NR];
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512i c = _mm512_set1_epi32(q.correction[(size_t) ((m0 + i) * q.nb + b)]);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) {
                sum[i][j] = c;
            }
        }
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            __m512i w[NR];
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) {
                w[j] = _mm512_loadu_si512(g[j] + b * kGroupBlock + v * 64);
            }
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                int32_t four;
                std::memcpy(&four, q.block(m0 + i, b) + 2 + 4 * v, 4);
                const __m512i xv = _mm512_set1_epi32(four);
#pragma GCC unroll 4
                for (int j = 0; j < NR; j++) {
                    sum[i][j] = _mm512_dpbusd_epi32(sum[i][j], w[j], xv);
                }
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            const __m512 dw = _mm512_loadu_ps(g[j] + b * kGroupBlock + 512);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(q.scale[(size_t) ((m0 + i) * q.nb + b)]));
                acc[i][j]          = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[i][j]), scale, acc[i][j]);
            }
        }
    }
    const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            const __mmask16 mask = j == NR - 1 ? (__mmask16) ((1u << lanes_last) - 1) : (__mmask16) 0xffff;
            float *         out  = y + (m0 + i) * ldy + n0 + kGroup * j;
            __m512          r    = acc[i][j];
            if (beta != 0.0f) {
                r = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask, out), r);
            }
            _mm512_mask_storeu_ps(out, mask, r);
        }
    }
}

constexpr int kTileRows = 6;  // MR: 12 int32 sums, 12 f32 accumulators, 2 W vectors in registers

template <int NR>
void rows_tail(const QuantizedRows & q, int64_t m0, int rows, const uint8_t * const * g, int64_t nb, float beta,
               float * y, int64_t ldy, int64_t n0, int lanes_last) {
    switch (rows) {
    case 1: tile<1, NR>(q, m0, g, nb, beta, y, ldy, n0, lanes_last); return;
    case 2: tile<2, NR>(q, m0, g, nb, beta, y, ldy, n0, lanes_last); return;
    case 3: tile<3, NR>(q, m0, g, nb, beta, y, ldy, n0, lanes_last); return;
    case 4: tile<4, NR>(q, m0, g, nb, beta, y, ldy, n0, lanes_last); return;
    case 5: tile<5, NR>(q, m0, g, nb, beta, y, ldy, n0, lanes_last); return;
    default: tile<kTileRows, NR>(q, m0, g, nb, beta, y, ldy, n0, lanes_last); return;
    }
}

void task_product(const QuantizedRows & q, int64_t M, const uint8_t * w, int64_t nb, int64_t n0, int64_t count,
                  float beta, float * y, int64_t ldy) {
    thread_local std::vector<uint8_t> packed;
    const int64_t                     groups = (count + kGroup - 1) / kGroup;
    packed.resize((size_t) (groups * nb * kGroupBlock));
    pack_rows(w, nb, n0, count, packed.data());
    for (int64_t gi = 0; gi < groups; gi += 2) {
        const int       pair  = gi + 1 < groups ? 2 : 1;
        const int64_t   last  = std::min<int64_t>(kGroup, count - (gi + pair - 1) * kGroup);
        const uint8_t * g[2]  = {packed.data() + gi * nb * kGroupBlock,
                                 packed.data() + (gi + pair - 1) * nb * kGroupBlock};
        for (int64_t m0 = 0; m0 < M; m0 += kTileRows) {
            const int rows = (int) std::min<int64_t>(kTileRows, M - m0);
            if (pair == 2) {
                rows_tail<2>(q, m0, rows, g, nb, beta, y, ldy, n0 + gi * kGroup, (int) last);
            } else {
                rows_tail<1>(q, m0, rows, g, nb, beta, y, ldy, n0 + gi * kGroup, (int) last);
            }
        }
    }
}

#else

void task_product(const QuantizedRows & q, int64_t M, const uint8_t * w, int64_t nb, int64_t n0, int64_t count,
                  float beta, float * y, int64_t ldy) {
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = n0; n < n0 + count; n++) {
            store(y + m * ldy + n, dot_blocks(q, m, w + n * nb * kBlockBytes), beta);
        }
    }
}

#endif

}  // namespace

bool q8_product_is_vectorized() {
#if PAFT_Q8_VNNI
    return true;
#else
    return false;
#endif
}

void q8_product(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy, int64_t M) {
    if (W.type != WeightType::Q8_0 || W.cols % kBlock != 0) {
        throw std::invalid_argument("q8_product: the weight is not Q8_0 with whole blocks per row");
    }
    if (M <= 0 || W.rows == 0) {
        return;
    }
    thread_local QuantizedRows q;
    quantize_activations(x, ldx, M, W.cols, q);
    const uint8_t * w     = static_cast<const uint8_t *>(W.data);
    const int64_t   tasks = (W.rows + kTaskRows - 1) / kTaskRows;
    const QuantizedRows & rows = q;  // the master thread's; other threads read it
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t n0 = t * kTaskRows;
        task_product(rows, M, w, rows.nb, n0, std::min(kTaskRows, W.rows - n0), beta, y, ldy);
    }
}

void q8_product_reference(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy,
                          int64_t M) {
    if (W.type != WeightType::Q8_0 || W.cols % kBlock != 0) {
        throw std::invalid_argument("q8_product_reference: the weight is not Q8_0 with whole blocks per row");
    }
    QuantizedRows q;
    quantize_activations(x, ldx, M, W.cols, q);
    const uint8_t * w = static_cast<const uint8_t *>(W.data);
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < W.rows; n++) {
            store(y + m * ldy + n, dot_blocks(q, m, w + n * q.nb * kBlockBytes), beta);
        }
    }
}

}  // namespace paft
