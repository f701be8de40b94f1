#include "core/weight_kernels.h"

#include "core/q8_product.h"
#include "core/simd.h"
#include "tensor/half.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace paft {

namespace {

// ---- 16 f32 lanes --------------------------------------------------------------------------
//
// Every kernel below works on 16 consecutive values of a weight row at a time, decoded to the
// exact f32 values dequantize_weight_rows gives (bf16/f16 widen exactly; q8_0's float(q) * d is an
// exact product, 8 by 11 significant bits; 4-bit is table[code] * absmax, the one f32 product
// bitsandbytes computes). AVX-512 holds them in one register, AVX2 in two; elsewhere an array,
// decoded value by value.

#if defined(__AVX512F__)

using Lanes = __m512;

inline Lanes lanes_zero() { return _mm512_setzero_ps(); }
inline Lanes lanes_load(const float * p) { return _mm512_loadu_ps(p); }
inline void  lanes_store(float * p, Lanes v) { _mm512_storeu_ps(p, v); }
inline Lanes lanes_fma(Lanes a, Lanes b, Lanes acc) { return _mm512_fmadd_ps(a, b, acc); }
inline float lanes_sum(Lanes v) { return _mm512_reduce_add_ps(v); }

struct Table16 {
    __m512 v;
    explicit Table16(const float * t) : v(_mm512_loadu_ps(t)) {}
};

inline Lanes lanes_from_bf16(const uint16_t * p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
inline Lanes lanes_from_f16(const uint16_t * p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
}
inline Lanes lanes_from_q8(const int8_t * q, float d) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(q))));
    return _mm512_mul_ps(v, _mm512_set1_ps(d));
}
// 16 codes from 8 bytes (value 2i in the high nibble of byte i): the bytes doubled into 16 lanes,
// the even lanes shifted right by 4; the permute reads only an index's low 4 bits. (Spreading the
// bytes with one VBMI byte permute instead of unpack + widen measured no faster.)
inline Lanes lanes_from_nibbles(const uint8_t * p, const Table16 & table, float scale) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(p));
    __m512i       i = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    i               = _mm512_mask_srli_epi32(i, 0x5555, i, 4);
    return _mm512_mul_ps(_mm512_permutexvar_ps(i, table.v), _mm512_set1_ps(scale));
}

#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

struct Lanes {
    __m256 lo, hi;
};

inline Lanes lanes_zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline Lanes lanes_load(const float * p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void  lanes_store(float * p, Lanes v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}
inline Lanes lanes_fma(Lanes a, Lanes b, Lanes acc) {
    return {_mm256_fmadd_ps(a.lo, b.lo, acc.lo), _mm256_fmadd_ps(a.hi, b.hi, acc.hi)};
}
inline float lanes_sum(Lanes v) {
    const __m256 s = _mm256_add_ps(v.lo, v.hi);
    __m128       q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q              = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q              = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

struct Table16 {
    __m256 lo, hi;
    explicit Table16(const float * t) : lo(_mm256_loadu_ps(t)), hi(_mm256_loadu_ps(t + 8)) {}
};

inline __m256 widen_bf16(const uint16_t * p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline Lanes lanes_from_bf16(const uint16_t * p) { return {widen_bf16(p), widen_bf16(p + 8)}; }
inline Lanes lanes_from_f16(const uint16_t * p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))),
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 8)))};
}
inline __m256 widen_q8(const int8_t * q, __m256 d) {
    const __m256i i = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(q)));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(i), d);
}
inline Lanes lanes_from_q8(const int8_t * q, float d) {
    const __m256 s = _mm256_set1_ps(d);
    return {widen_q8(q, s), widen_q8(q + 8, s)};
}
// Eight codes (odd lanes may carry a byte's high nibble above bit 3): two 8-entry permutes, the
// entry picked by bit 3, moved to the sign bit that blendv reads.
inline __m256 lookup16(const Table16 & t, __m256i i) {
    const __m256 lo = _mm256_permutevar8x32_ps(t.lo, i), hi = _mm256_permutevar8x32_ps(t.hi, i);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
}
inline Lanes lanes_from_nibbles(const uint8_t * p, const Table16 & table, float scale) {
    const __m128i b     = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(p));
    const __m128i d     = _mm_unpacklo_epi8(b, b);  // b0 b0 b1 b1 ... b7 b7
    const __m256i shift = _mm256_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0);
    const __m256i lo    = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(d), shift);
    const __m256i hi    = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(d, 8)), shift);
    const __m256  s     = _mm256_set1_ps(scale);
    return {_mm256_mul_ps(lookup16(table, lo), s), _mm256_mul_ps(lookup16(table, hi), s)};
}

#else

// A plain array (a 64-byte GCC vector would change the ABI of these functions without AVX-512,
// which -Wpsabi reports); the loops vectorise with what the target has.
struct Lanes {
    float v[16];
};

inline Lanes lanes_zero() { return Lanes{}; }
inline Lanes lanes_load(const float * p) {
    Lanes l;
    std::memcpy(l.v, p, sizeof l.v);
    return l;
}
inline void  lanes_store(float * p, const Lanes & l) { std::memcpy(p, l.v, sizeof l.v); }
inline Lanes lanes_fma(const Lanes & a, const Lanes & b, Lanes acc) {
    for (int j = 0; j < 16; j++) {
        acc.v[j] += a.v[j] * b.v[j];
    }
    return acc;
}
inline float lanes_sum(const Lanes & l) {
    float s = 0.0f;
    for (int j = 0; j < 16; j++) {
        s += l.v[j];
    }
    return s;
}

struct Table16 {
    float v[16];
    explicit Table16(const float * t) { std::memcpy(v, t, sizeof v); }
};

inline Lanes lanes_from_bf16(const uint16_t * p) {
    Lanes l;
    for (int j = 0; j < 16; j++) {
        l.v[j] = bf16_to_f32(p[j]);
    }
    return l;
}
inline Lanes lanes_from_f16(const uint16_t * p) {
    Lanes l;
    for (int j = 0; j < 16; j++) {
        l.v[j] = f16_to_f32(p[j]);
    }
    return l;
}
inline Lanes lanes_from_q8(const int8_t * q, float d) {
    Lanes l;
    for (int j = 0; j < 16; j++) {
        l.v[j] = static_cast<float>(q[j]) * d;
    }
    return l;
}
inline Lanes lanes_from_nibbles(const uint8_t * p, const Table16 & table, float scale) {
    Lanes l;
    for (int j = 0; j < 8; j++) {
        l.v[2 * j]     = table.v[p[j] >> 4] * scale;
        l.v[2 * j + 1] = table.v[p[j] & 15] * scale;
    }
    return l;
}

#endif

inline float half_at(const uint8_t * p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return f16_to_f32(h);
#endif
}

// Per-thread scratch, grown as needed and kept (a few MiB at most: a panel of 4 MiB, a few rows):
// slots 0..3 for the rows of a tile (absmax values, dequantized rows), kPanelSlot for a panel.
constexpr int kPanelSlot = 4;

float * thread_scratch(int slot, size_t n) {
    thread_local std::vector<float> scratch[kPanelSlot + 1];
    if (scratch[slot].size() < n) {
        scratch[slot].resize(n);
    }
    return scratch[slot].data();
}

// ---- row decoders ----------------------------------------------------------------------------
//
// Each gives, for a row n of W:
//   row(n, slot)   the state to read it (slot: the scratch a tile's row may use);
//   load(row, k)   values [k, k+16) as Lanes, for k + 16 <= vec_cols() (a multiple of 16);
//   at(row, k)     one value, for the columns past vec_cols();
//   bytes(row, k)  where value k is stored, and row_bytes(): for prefetching, every
//                  kPrefetchValues values (about a cache line; 0: none).
// Index arithmetic is unsigned (k >= 0): a signed division by 32 or 64 costs a sign fix-up per
// chunk, which measured 11% of nf4's time at M = 1.

struct F32Rows {
    const float * base;
    int64_t       cols;
    struct Row {
        const float * p;
    };
    static constexpr int64_t kPrefetchValues = 16;

    int64_t      vec_cols() const { return cols / 16 * 16; }
    int64_t      row_bytes() const { return cols * 4; }
    Row          row(int64_t n, int) const { return {base + n * cols}; }
    Lanes        load(const Row & r, int64_t k) const { return lanes_load(r.p + k); }
    float        at(const Row & r, int64_t k) const { return r.p[k]; }
    const char * bytes(const Row & r, int64_t k) const { return reinterpret_cast<const char *>(r.p + k); }
};

// BF16 and F16: two bytes a value, widened 16 at a time (Widen16) or one by one (Widen1).
template <Lanes (*Widen16)(const uint16_t *), float (*Widen1)(uint16_t)>
struct HalfRows {
    const uint16_t * base;
    int64_t          cols;
    struct Row {
        const uint16_t * p;
    };
    static constexpr int64_t kPrefetchValues = 32;

    int64_t      vec_cols() const { return cols / 16 * 16; }
    int64_t      row_bytes() const { return cols * 2; }
    Row          row(int64_t n, int) const { return {base + n * cols}; }
    Lanes        load(const Row & r, int64_t k) const { return Widen16(r.p + k); }
    float        at(const Row & r, int64_t k) const { return Widen1(r.p[k]); }
    const char * bytes(const Row & r, int64_t k) const { return reinterpret_cast<const char *>(r.p + k); }
};
using Bf16Rows = HalfRows<lanes_from_bf16, bf16_to_f32>;
using F16Rows  = HalfRows<lanes_from_f16, f16_to_f32>;

// Q8_0: per 32 values, an f16 scale d then 32 int8 (34 bytes); cols is a multiple of 32. (Converting
// a row's scales once into scratch, to broadcast them from memory, measured no faster than
// converting the scale for every 16 values.)
constexpr int64_t kQ8BlockBytes = 2 + kQ8Block;

struct Q8Rows {
    const uint8_t * base;
    int64_t         cols;
    struct Row {
        const uint8_t * p;
    };
    static constexpr int64_t kPrefetchValues = kQ8Block;  // a block, 34 bytes

    int64_t         vec_cols() const { return cols; }
    int64_t         row_bytes() const { return cols / kQ8Block * kQ8BlockBytes; }
    Row             row(int64_t n, int) const { return {base + n * row_bytes()}; }
    const uint8_t * block(const Row & r, int64_t k) const { return r.p + ((uint64_t) k / kQ8Block) * kQ8BlockBytes; }
    Lanes           load(const Row & r, int64_t k) const {
        const uint8_t * b = block(r, k);
        return lanes_from_q8(reinterpret_cast<const int8_t *>(b + 2 + (uint64_t) k % kQ8Block), half_at(b));
    }
    float at(const Row & r, int64_t k) const {
        const uint8_t * b = block(r, k);
        return static_cast<float>(static_cast<int8_t>(b[2 + (uint64_t) k % kQ8Block])) * half_at(b);
    }
    const char * bytes(const Row & r, int64_t k) const { return reinterpret_cast<const char *>(block(r, k)); }
};

// NF4/FP4 with cols a multiple of 16: every row starts on a byte, and 16 values [k, k+16) of a
// row lie in one 64-value absmax block of the flattened tensor. A row's absmax values are decoded
// once into scratch (bnb4_absmax: plain or double-quantized alike).
struct Bnb4Rows {
    const Weight *  w;
    const uint8_t * codes;
    int64_t         cols;
    Table16         table;
    const float *   table_values;
    struct Row {
        const uint8_t * p;       // the row's first byte
        const float *   absmax;  // the absmax of the blocks the row touches
        int64_t         phase;   // the row's first value's offset in its block
    };
    static constexpr int64_t kPrefetchValues = 128;

    Bnb4Rows(const Weight & weight, const float * values)
        : w(&weight), codes(static_cast<const uint8_t *>(weight.data)), cols(weight.cols), table(values),
          table_values(values) {}
    int64_t vec_cols() const { return cols; }
    int64_t row_bytes() const { return cols / 2; }
    Row     row(int64_t n, int slot) const {
        const int64_t first = n * cols, b0 = first / kBnb4Block, nb = (first + cols - 1) / kBnb4Block - b0 + 1;
        float *       absmax = thread_scratch(slot, (size_t) nb);
        bnb4_absmax(*w, b0, nb, absmax);
        return {codes + first / 2, absmax, first % kBnb4Block};
    }
    float absmax_at(const Row & r, int64_t k) const { return r.absmax[(uint64_t) (r.phase + k) / kBnb4Block]; }
    Lanes load(const Row & r, int64_t k) const {
        return lanes_from_nibbles(r.p + (uint64_t) k / 2, table, absmax_at(r, k));
    }
    float at(const Row & r, int64_t k) const {
        const uint8_t byte = r.p[(uint64_t) k / 2];
        return table_values[k % 2 == 0 ? byte >> 4 : byte & 15] * absmax_at(r, k);
    }
    const char * bytes(const Row & r, int64_t k) const {
        return reinterpret_cast<const char *>(r.p + (uint64_t) k / 2);
    }
};

// Any type, a row at a time through dequantize_weight_rows into scratch: NF4/FP4 whose rows do
// not start on 16-value boundaries (cols not a multiple of 16).
struct DequantizedRows {
    const Weight * w;
    int64_t        cols;
    struct Row {
        const float * p;
    };
    static constexpr int64_t kPrefetchValues = 0;  // the row is in scratch already

    int64_t vec_cols() const { return cols / 16 * 16; }
    int64_t row_bytes() const { return 0; }
    Row     row(int64_t n, int slot) const {
        float * dst = thread_scratch(slot, (size_t) cols);
        dequantize_weight_rows(*w, n, 1, dst);
        return {dst};
    }
    Lanes        load(const Row & r, int64_t k) const { return lanes_load(r.p + k); }
    float        at(const Row & r, int64_t k) const { return r.p[k]; }
    const char * bytes(const Row &, int64_t) const { return nullptr; }
};

// Calls fn(decoder) with the decoder of W's type.
template <class Fn>
void with_rows(const Weight & W, Fn && fn) {
    switch (W.type) {
    case WeightType::F32: fn(F32Rows{W.f32(), W.cols}); return;
    case WeightType::BF16: fn(Bf16Rows{static_cast<const uint16_t *>(W.data), W.cols}); return;
    case WeightType::F16: fn(F16Rows{static_cast<const uint16_t *>(W.data), W.cols}); return;
    case WeightType::Q8_0:
        if (W.cols % kQ8Block != 0) {
            throw std::invalid_argument("weight_matmul: a Q8_0 row length that is not a multiple of 32");
        }
        fn(Q8Rows{static_cast<const uint8_t *>(W.data), W.cols});
        return;
    case WeightType::NF4:
    case WeightType::FP4:
        // Checked here: bnb4_absmax would throw it inside a parallel region, which terminates.
        if (W.numel() > 0 && W.absmax == nullptr && (W.absmax_q == nullptr || W.absmax_scale == nullptr)) {
            throw std::invalid_argument("weight_matmul: a 4-bit weight without its absmax");
        }
        if (W.cols % 16 == 0) {
            fn(Bnb4Rows(W, W.type == WeightType::NF4 ? kNF4Values : kFP4Values));
        } else {
            fn(DequantizedRows{&W, W.cols});
        }
        return;
    }
    throw std::invalid_argument("weight_matmul: unknown weight type");
}

// ---- few rows: dot products ------------------------------------------------------------------
//
// A tile is NW rows of W against NX rows of x: NW * NX accumulators of 16 lanes, each W chunk
// decoded once for the NX rows, each x chunk loaded once for the NW rows. Every output is the same
// sequence of operations whatever the tile it falls in: one accumulator over the 16-value chunks
// in order, its lanes summed, then the tail columns added one by one. Tiles are fixed by the row
// indexes, not by the threads.
// AVX-512: 4 x 4 tiles, 16 accumulators plus four decoded chunks and an x chunk in the 32
// registers. Four rows of W in flight (four accumulator chains and four memory streams at M = 1)
// measured 1.2-1.5x faster than two at M = 1..4 on one thread (W [4096, 4096], bf16/q8_0/nf4); 4 x 4
// and 4 x 8 (which spills) were even. AVX2, where a Lanes is two of its 16 registers: 2 x 2.
#if defined(__AVX512F__)
constexpr int kTileW = 4;
constexpr int kTileX = 4;
#else
constexpr int kTileW = 2;
constexpr int kTileX = 2;
#endif
static_assert(kTileW <= kPanelSlot, "a tile's rows each need their own scratch slot");

template <int NW, int NX, class Rows>
void dot_tile(const Rows & rows, const typename Rows::Row * w, const float * const * x, float * out, int64_t ahead) {
    Lanes acc[NW][NX];
    for (int i = 0; i < NW; i++) {
        for (int j = 0; j < NX; j++) {
            acc[i][j] = lanes_zero();
        }
    }
    const int64_t vec_cols = rows.vec_cols();
    for (int64_t k = 0; k < vec_cols; k += 16) {
        // A tile reads its rows as NW short streams (a row of nf4 [*, 4096] is 2 KiB) that the
        // hardware prefetcher barely ramps up on; so each 64-byte line of the next tile is
        // requested into L2 (`ahead` bytes on) while this one is read. Measured at M = 1, one
        // thread, W [14336, 4096] from memory: bf16 22 -> 31-35 GB/s, q8_0 11.5 -> 20, nf4 7.2 -> 8.6
        // (sgemv on the f32 copy: 30 GB/s).
        // (The address is computed as an integer: past W's end it is no pointer into it.)
        if constexpr (Rows::kPrefetchValues > 0) {
            if (k % Rows::kPrefetchValues == 0) {
                for (int i = 0; i < NW; i++) {
                    const uintptr_t next = reinterpret_cast<uintptr_t>(rows.bytes(w[i], k)) + (uintptr_t) ahead;
                    __builtin_prefetch(reinterpret_cast<const void *>(next), 0, 2);
                }
            }
        }
        Lanes wk[NW];
        for (int i = 0; i < NW; i++) {
            wk[i] = rows.load(w[i], k);
        }
        for (int j = 0; j < NX; j++) {
            const Lanes xk = lanes_load(x[j] + k);
            for (int i = 0; i < NW; i++) {
                acc[i][j] = lanes_fma(wk[i], xk, acc[i][j]);
            }
        }
    }
    for (int i = 0; i < NW; i++) {
        for (int j = 0; j < NX; j++) {
            float s = lanes_sum(acc[i][j]);
            for (int64_t k = vec_cols; k < rows.cols; k++) {
                s += rows.at(w[i], k) * x[j][k];
            }
            out[i * NX + j] = s;
        }
    }
}

// dot_tile<NW, nx> for a run-time nx in 1..kTileX.
template <int NW, class Rows>
void dot_tile_nx(int nx, const Rows & rows, const typename Rows::Row * w, const float * const * x, float * out,
                 int64_t ahead) {
    static_assert(kTileX <= 4, "the cases below cover up to 4 rows of x");
    switch (nx) {
    case 1: dot_tile<NW, 1>(rows, w, x, out, ahead); return;
    case 2: if constexpr (kTileX >= 2) dot_tile<NW, 2>(rows, w, x, out, ahead); return;
    case 3: if constexpr (kTileX >= 3) dot_tile<NW, 3>(rows, w, x, out, ahead); return;
    case 4: if constexpr (kTileX >= 4) dot_tile<NW, 4>(rows, w, x, out, ahead); return;
    }
}

template <class Rows>
void few_rows_product(const Rows & rows, const float * x, int64_t ldx, float beta, float * y, int64_t ldy, int64_t M,
                      int64_t N) {
    static_assert(kTileW <= 4, "the cases below cover up to 4 rows of W");
    const int64_t tiles = (N + kTileW - 1) / kTileW;
    const int64_t ahead = kTileW * rows.row_bytes();  // the same place in the next tile's rows
    // Threads take contiguous ranges of W's rows, each row read from memory once; a tile's rows
    // stay in L1/L2 while the groups of x's rows pass over them.
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t      n0 = t * kTileW;
        const int          nw = (int) std::min<int64_t>(kTileW, N - n0);
        typename Rows::Row w[kTileW];
        for (int i = 0; i < nw; i++) {
            w[i] = rows.row(n0 + i, i);
        }
        for (int64_t m0 = 0; m0 < M; m0 += kTileX) {
            const int     nx = (int) std::min<int64_t>(kTileX, M - m0);
            const float * xr[kTileX];
            for (int j = 0; j < nx; j++) {
                xr[j] = x + (m0 + j) * ldx;
            }
            float out[kTileW * kTileX] = {};  // (initialised: GCC cannot see the dispatch fill it)
            switch (nw) {
            case 1: dot_tile_nx<1>(nx, rows, w, xr, out, ahead); break;
            case 2: if constexpr (kTileW >= 2) dot_tile_nx<2>(nx, rows, w, xr, out, ahead); break;
            case 3: if constexpr (kTileW >= 3) dot_tile_nx<3>(nx, rows, w, xr, out, ahead); break;
            case 4: if constexpr (kTileW >= 4) dot_tile_nx<4>(nx, rows, w, xr, out, ahead); break;
            }
            for (int j = 0; j < nx; j++) {
                float * yr = y + (m0 + j) * ldy + n0;
                for (int i = 0; i < nw; i++) {
                    yr[i] = beta == 0.0f ? out[i * nx + j] : out[i * nx + j] + beta * yr[i];
                }
            }
        }
    }
}

// ---- many rows: panels of W in f32 and sgemm --------------------------------------------------
//
// OpenBLAS's threaded sgemm does not give the same bits as its single-threaded one (measured:
// results differ between OMP_NUM_THREADS=1 and 2), so neither way calls it threaded. Work is
// split into tasks fixed by the shapes alone, each a single-threaded sgemm (OpenBLAS's OpenMP
// build runs on the calling thread inside a parallel region): an output's bits do not depend on
// which thread, or how many, did its task.

// The block [n0, n0 + count) x [c0, c0 + width) of W as f32 into dst [count, width] (row stride
// width), through the same decoders as the dot products: exactly dequantize_weight_rows's values
// (whose f16 conversion is a call per value). c0 is a multiple of 16.
template <class Rows>
void decode_block(const Rows & rows, int64_t n0, int64_t count, int64_t c0, int64_t width, float * dst) {
    const int64_t c1 = c0 + width, vec_end = std::max(c0, std::min(c1, rows.vec_cols()));
    for (int64_t r = 0; r < count; r++) {
        const auto row = rows.row(n0 + r, 0);
        float *    out = dst + r * width - c0;
        int64_t    k   = c0;
        for (; k + 16 <= vec_end; k += 16) {
            lanes_store(out + k, rows.load(row, k));
        }
        for (; k < c1; k++) {
            out[k] = rows.at(row, k);
        }
    }
}

template <class Rows>
constexpr bool kInPlace = std::is_same_v<Rows, F32Rows>;  // F32 panels are W itself

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Rows of W per forward task. Each sgemm call packs all of x again (M * cols values) against
// 2 * M * cols * rows flops, so small panels pay for that packing: at M = 128 and 512, one thread,
// W [4096, 4096] bf16/nf4, panels of 64 rows ran at 0.91-0.97 of the f32 sgemm's speed, 256 rows
// at 0.96-1.02, 512 rows at 0.91-0.94. Hence ~4 MiB of f32 rows, 64 to 256 of them; but at least
// 8 panels when W has the rows (GQA's key/value projections, [256, 2048]), so that the threads
// share even small weights. Depends only on W's shape, never on the thread count.
int64_t forward_panel_rows(int64_t rows, int64_t cols) {
    constexpr int64_t kPanelBytes = 4 << 20;
    const int64_t     by_size     = std::clamp<int64_t>(kPanelBytes / (4 * cols) / 16 * 16, 64, 256);
    return std::max<int64_t>(16, std::min(by_size, round_up((rows + 7) / 8, 16)));
}

// The backward's tasks: slices of dx's columns, each taking W's rows in panels of
// kBackwardPanelRows in order: dx[:, slice] += dy[:, panel] · W[panel, slice]. A block of
// 256 x 512 f32 (512 KiB) stays in L2. Measured at M = 128 and 512 against the f32 sgemm
// (dx += dy W on an f32 copy): one thread, W [4096, 4096] bf16, slices of 512 columns 0.91-0.93 of
// its speed, 256 columns 0.84-0.88; two threads, panels of 256/512/1024 rows x slices of 512/1024
// columns all 0.8-0.95, within this shared machine's noise. Slices are a multiple of 64 columns
// (no Q8_0 or 4-bit block straddles two) and at least 8 when W has the columns.
constexpr int64_t kBackwardPanelRows = 256;

int64_t backward_slice_cols(int64_t cols) { return std::clamp<int64_t>(round_up((cols + 7) / 8, 64), 64, 512); }

// y = beta * y (beta 0: zeros, whatever y held) for the degenerate product with no columns.
void scale_rows(float beta, float * y, int64_t ldy, int64_t M, int64_t N) {
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            y[m * ldy + n] = beta == 0.0f ? 0.0f : beta * y[m * ldy + n];
        }
    }
}

}  // namespace

// Measured with bench-weight-matmul on this machine (AMD EPYC Zen 5, 2 cores shared with other
// jobs; OpenBLAS 0.3.21, whose sgemm runs its Haswell AVX2 kernel here, ~100 GFLOP/s a core), one
// thread (the quieter figures), few-row ms vs panel ms for bf16 (q8_0, nf4 alike):
//              [2048,2048] [5632,2048] [2048,5632] [4096,4096] [14336,4096]
//     M = 16    1.9 / 2.5   5.1 / 6.8   3.6 / 6.6   5.3 / 9.6   37.6 / 51.0
//     M = 32    3.5 / 3.6   10.0 / 10.1 5.9 / 9.8   14.7 / 20.1 48.9 / 51.9
//     M = 64    7.0 / 6.1   20.0 / 17.1 18.8 / 16.6 27.6 / 37.6 93.1 / 85.6
// Up to 32 rows the dot products are never slower; at 64 the panels win on four shapes of five
// (x's 64 rows no longer stay in L2 next to the tile). Two threads (noisier) agreed: at M = 32 the
// dot products won or tied on all five shapes, at M = 64 on one.
const int64_t kWeightFewRows = 32;

void weight_matmul_few_rows(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy,
                            int64_t M) {
    if (M <= 0 || W.rows == 0) {
        return;
    }
    if (W.cols == 0) {
        scale_rows(beta, y, ldy, M, W.rows);
        return;
    }
    with_rows(W, [&](const auto & rows) { few_rows_product(rows, x, ldx, beta, y, ldy, M, W.rows); });
}

void weight_matmul_panels(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy,
                          int64_t M) {
    if (M <= 0 || W.rows == 0) {
        return;
    }
    if (W.cols == 0) {
        scale_rows(beta, y, ldy, M, W.rows);
        return;
    }
    // Each thread dequantizes whole panels into its own buffer and multiplies them at once: no
    // barrier between dequantizing and multiplying, and the panel is still in the thread's cache
    // when sgemm packs it. Dynamic scheduling: the machine is shared, and a panel is one sgemm.
    const int64_t cols = W.cols, rows_per_panel = forward_panel_rows(W.rows, cols);
    const int64_t panels = (W.rows + rows_per_panel - 1) / rows_per_panel;
    with_rows(W, [&](const auto & rows) {
        using Rows = std::decay_t<decltype(rows)>;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t p = 0; p < panels; p++) {
            const int64_t n0 = p * rows_per_panel, count = std::min(rows_per_panel, W.rows - n0);
            const float * panel;
            if constexpr (kInPlace<Rows>) {
                panel = W.f32() + n0 * cols;
            } else {
                float * buffer = thread_scratch(kPanelSlot, (size_t) (count * cols));
                decode_block(rows, n0, count, 0, cols, buffer);
                panel = buffer;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) count, (int) cols, 1.0f, x, (int) ldx,
                        panel, (int) cols, beta, y + n0, (int) ldy);
        }
    });
}

void weight_matmul(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy, int64_t M) {
    if (M <= kWeightFewRows) {
        weight_matmul_few_rows(x, ldx, W, beta, y, ldy, M);
    } else if (W.type == WeightType::Q8_0 && W.cols > 0) {
        q8_product(x, ldx, W, beta, y, ldy, M);
    } else {
        weight_matmul_panels(x, ldx, W, beta, y, ldy, M);
    }
}

void weight_matmul_backward(float * dx, int64_t lddx, const float * dy, int64_t lddy, const Weight & W, int64_t M) {
    if (M <= 0 || W.rows == 0 || W.cols == 0) {
        return;
    }
    const int64_t cols = W.cols, slice = backward_slice_cols(cols), rows_per_panel = kBackwardPanelRows;
    const int64_t slices = (cols + slice - 1) / slice;
    with_rows(W, [&](const auto & rows) {
        using Rows = std::decay_t<decltype(rows)>;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t s = 0; s < slices; s++) {
            const int64_t c0 = s * slice, width = std::min(slice, cols - c0);
            for (int64_t n0 = 0; n0 < W.rows; n0 += rows_per_panel) {
                const int64_t count = std::min(rows_per_panel, W.rows - n0);
                const float * block;
                int64_t       ld;
                if constexpr (kInPlace<Rows>) {
                    block = W.f32() + n0 * cols + c0;
                    ld    = cols;
                } else {
                    float * buffer = thread_scratch(kPanelSlot, (size_t) (count * width));
                    decode_block(rows, n0, count, c0, width, buffer);
                    block = buffer;
                    ld    = width;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) M, (int) width, (int) count, 1.0f,
                            dy + n0, (int) lddy, block, (int) ld, 1.0f, dx + c0, (int) lddx);
            }
        }
    });
}

}  // namespace paft
