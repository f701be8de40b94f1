// The CPU backend: OpenBLAS (OpenMP build) for the products, OpenMP loops for the rest.
//
// Determinism: every loop uses a static schedule and every reduction over tokens is done in
// per-thread partial sums combined in thread order, so a fixed thread count gives bit-identical
// results. BLAS calls made inside our parallel regions run single-threaded (OpenBLAS checks
// omp_in_parallel), which is what the per-head attention loops rely on.
#include "core/backend.h"
#include "core/communicator.h"
#include "core/error.h"
#include "core/weight_kernels.h"
#include "core/fast_math.h"

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <cmath>
#include <vector>

namespace paft {
namespace {

// Sums per-thread partial rows into out[M]: partial is [threads, M], combined in thread order.
void reduce_partials(float * out, const std::vector<float> & partial, int threads, int M) {
    for (int t = 0; t < threads; t++) {
        const float * p = partial.data() + (size_t) t * M;
        for (int m = 0; m < M; m++) {
            out[m] += p[m];
        }
    }
}

constexpr int kQueryBlock = 64;  // queries per attention block

// The first key any query of a block starting at query i0 may see.
int first_key(int i0, int window) {
    return window > 0 ? std::max(0, i0 - window + 1) : 0;
}

// The keys query i may see: j in [first_key(i), i] with key_mask[j] set, and not before the start
// of query i's example in a packed row.
bool key_allowed(int i, int j, const int32_t * key_mask, const int32_t * doc_start, int window) {
    return j <= i && j >= first_key(i, window) && key_mask[j] && (!doc_start || j >= doc_start[i]);
}

// One attention row: scores[j] holds q_i . k_(k0+j) for j < L. Overwrites them with the softmax
// weights over the allowed keys (0 elsewhere) and returns the log-sum-exp of the scaled scores,
// or -inf when no key is allowed (the row is then all zero).
float softmax_row(float * scores, int k0, int L, int i, const int32_t * key_mask, const int32_t * doc_start,
                  int window, float scale) {
    float maxv = -INFINITY;
    for (int j = 0; j < L; j++) {
        maxv = key_allowed(i, k0 + j, key_mask, doc_start, window) ? std::max(maxv, scores[j] * scale) : maxv;
    }
    if (maxv == -INFINITY) {
        std::fill(scores, scores + L, 0.0f);
        return -INFINITY;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < L; j++) {
        float e   = key_allowed(i, k0 + j, key_mask, doc_start, window) ? fast_exp(scores[j] * scale - maxv) : 0.0f;
        scores[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < L; j++) {
        scores[j] *= inv;
    }
    return maxv + std::log(sum);
}

// The backward's recomputation of the same weights from the saved log-sum-exp.
void weights_row(float * scores, int k0, int L, int i, const int32_t * key_mask, const int32_t * doc_start, int window,
                 float scale, float lse) {
    if (lse == -INFINITY) {
        std::fill(scores, scores + L, 0.0f);
        return;
    }
#pragma omp simd
    for (int j = 0; j < L; j++) {
        scores[j] = key_allowed(i, k0 + j, key_mask, doc_start, window) ? fast_exp(scores[j] * scale - lse) : 0.0f;
    }
}

// A block row's softmax for attention_cached: scores[j] for j < L are the scores of keys k0 + j;
// the allowed keys are the columns [lo, hi) (a contiguous range: causal, sliding window). Scaled
// and max-subtracted as softmax_row; the other columns become 0.
void softmax_span(float * scores, int L, int lo, int hi, float scale) {
    float maxv = -INFINITY;
    for (int j = lo; j < hi; j++) {
        maxv = std::max(maxv, scores[j] * scale);
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = lo; j < hi; j++) {
        float e   = fast_exp(scores[j] * scale - maxv);
        scores[j] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int j = lo; j < hi; j++) {
        scores[j] *= inv;
    }
    std::fill(scores, scores + lo, 0.0f);
    std::fill(scores + hi, scores + L, 0.0f);
}

// A growing per-thread buffer of at least `n` floats: the attention tiles of attention_cached,
// which runs once per layer and token step, without an allocation each time. (A tile holds at
// most kQueryBlock rows of the keys one block sees, so growing it inside a parallel region,
// where running out of memory would terminate, is no practical risk.)
float * thread_tile(size_t n) {
    thread_local std::vector<float> tile;
    if (tile.size() < n) {
        tile.resize(n);
    }
    return tile.data();
}

// Products of a few rows against a weight matrix, C[M, N] = alpha * A[M, K] * B[N, K]^T + beta * C
// with M <= kFewRows (a decoding step of several sequences, the choices of a question): sgemm
// packs all of B for them, which costs more than the product itself. Here each row of B is read
// from memory once and dotted with the rows of A, four at a time, while it is in cache. Each output
// is one dot product in a fixed order (2 x 8 lanes, the lanes summed, then the tail), whatever the
// threads and whichever rows share its block.
constexpr int kFewRows  = 16;
constexpr int kRowBlock = 4;

// Eight floats as one vector register (GCC's generic vectors: AVX with -march=native, emulated
// elsewhere); 16 lanes a row keep two independent accumulators per row of A.
typedef float Lanes8 __attribute__((vector_size(32)));

Lanes8 load8(const float * p) {
    Lanes8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// out[r] = dot(a[r], b) for the kRowBlock rows a[r] of length K.
void dot_block(const float * const * a, const float * b, int K, float * out) {
    Lanes8 acc[kRowBlock][2] = {};
    int    k                 = 0;
    for (; k + 16 <= K; k += 16) {
        const Lanes8 b0 = load8(b + k), b1 = load8(b + k + 8);
        for (int r = 0; r < kRowBlock; r++) {
            acc[r][0] += load8(a[r] + k) * b0;
            acc[r][1] += load8(a[r] + k + 8) * b1;
        }
    }
    for (int r = 0; r < kRowBlock; r++) {
        const Lanes8 v   = acc[r][0] + acc[r][1];
        float        sum = 0.0f;
        for (int j = 0; j < 8; j++) {
            sum += v[j];
        }
        for (int t = k; t < K; t++) {
            sum += a[r][t] * b[t];
        }
        out[r] = sum;
    }
}

void gemm_few_rows(int M, int N, int K, float alpha, const float * A, int lda, const float * B, int ldb, float beta,
                   float * C, int ldc) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float * b = B + (size_t) n * ldb;
        for (int m0 = 0; m0 < M; m0 += kRowBlock) {
            const float * rows[kRowBlock];
            for (int r = 0; r < kRowBlock; r++) {
                rows[r] = A + (size_t) std::min(m0 + r, M - 1) * lda;  // past M: a repeated row, dropped
            }
            float dots[kRowBlock];
            dot_block(rows, b, K, dots);
            for (int r = 0; r < kRowBlock && m0 + r < M; r++) {
                float & c = C[(size_t) (m0 + r) * ldc + n];
                c         = beta == 0.0f ? alpha * dots[r] : alpha * dots[r] + beta * c;  // beta = 0 ignores C (NaN too)
            }
        }
    }
}

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(int threads) {
        // A fixed team size (partial sums are split by thread) and no nested teams: BLAS and loops
        // called inside a parallel region (ParallelTransformer's workers) run on the calling thread.
        omp_set_dynamic(0);
        omp_set_max_active_levels(1);
        if (threads > 0) {
            omp_set_num_threads(threads);
            openblas_set_num_threads(threads);
        }
        threads_ = omp_get_max_threads();
    }

    const char * name() const override { return "cpu"; }

    int threads() const override { return threads_; }

    void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float * A, int lda,
              const float * B, int ldb, float beta, float * C, int ldc) override {
        if (M == 0 || N == 0) {
            return;
        }
        if (M == 1) {
            // One row (a decoding step of one sequence): sgemm would pack the whole of B for it,
            // which costs several times the product itself; sgemv streams B once. C's row is
            // zeroed first for beta = 0: BLAS need not read it then, but some versions scale it
            // by 0, which keeps a NaN.
            if (beta == 0.0f) {
                std::fill(C, C + N, 0.0f);
            }
            const int incx = trans_a ? lda : 1;  // op(A)'s only row: a row of A, or a column
            if (trans_b) {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, incx, beta, C, 1);  // B [N, K]
            } else {
                cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, incx, beta, C, 1);  // B [K, N]
            }
            return;
        }
        if (!trans_a && trans_b && M <= kFewRows) {
            gemm_few_rows(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A, lda, B, ldb, beta, C, ldc);
    }

    void * alloc(size_t bytes) override {
        void * p = std::malloc(bytes ? bytes : 1);
        if (!p) throw std::bad_alloc();
        return p;
    }
    void free(void * ptr) override { std::free(ptr); }
    void upload(void * dst, const void * src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void download(void * dst, const void * src, size_t bytes) override { std::memcpy(dst, src, bytes); }

    void matmul_weight(const float * x, int ldx, const Weight & W, float beta, float * y, int ldy, int M) override {
        if (W.type == WeightType::F32) {
            // The f32 path is gemm's own (sgemv for one row, the few-rows kernel, sgemm).
            gemm(false, true, M, (int) W.rows, (int) W.cols, 1.0f, x, ldx, W.f32(), (int) W.cols, beta, y, ldy);
            return;
        }
        weight_matmul(x, ldx, W, beta, y, ldy, M);
    }

    void matmul_weight_backward(float * dx, int lddx, const float * dy, int lddy, const Weight & W, int M) override {
        if (W.type == WeightType::F32) {
            gemm(false, false, M, (int) W.cols, (int) W.rows, 1.0f, dy, lddy, W.f32(), (int) W.cols, 1.0f, dx, lddx);
            return;
        }
        weight_matmul_backward(dx, lddx, dy, lddy, W, M);
    }

    void embedding_forward(float * out, const int32_t * ids, const Weight & table, int N, int C) override {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            dequantize_weight_rows(table, ids[n], 1, out + (size_t) n * C);
        }
    }

    void embedding_backward(float * dtable, const float * dout, const int32_t * ids, int N, int C) override {
        // Serial over tokens: two tokens may share an id, and the order of additions must be fixed.
        for (int n = 0; n < N; n++) {
            float *       row = dtable + (size_t) ids[n] * C;
            const float * g   = dout + (size_t) n * C;
            for (int c = 0; c < C; c++) {
                row[c] += g[c];
            }
        }
    }

    void rmsnorm_forward(float * out, float * rstd, const float * x, const float * w, int N, int C,
                         float eps) override {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float * xr = x + (size_t) n * C;
            float         ss = 0.0f;
#pragma omp simd reduction(+ : ss)
            for (int c = 0; c < C; c++) {
                ss += xr[c] * xr[c];
            }
            float r  = 1.0f / std::sqrt(ss / C + eps);
            rstd[n]  = r;
            float * o = out + (size_t) n * C;
            for (int c = 0; c < C; c++) {
                o[c] = w[c] * (xr[c] * r);
            }
        }
    }

    void rmsnorm_backward(float * dx, float * dw, const float * dout, const float * x, const float * w,
                          const float * rstd, int N, int C) override {
        // out_c = w_c x_c r, r = (mean(x^2)+eps)^-1/2:
        // dx_c = r w_c g_c - (r^3 / C) x_c sum_j w_j g_j x_j,   dw_c = sum_n g_c x_c r.
        std::vector<float> partial(dw ? (size_t) threads_ * C : 0, 0.0f);
#pragma omp parallel num_threads(threads_)
        {
            float * dw_t = dw ? partial.data() + (size_t) omp_get_thread_num() * C : nullptr;
#pragma omp for schedule(static)
            for (int n = 0; n < N; n++) {
                const float * xr  = x + (size_t) n * C;
                const float * g   = dout + (size_t) n * C;
                float *       dxr = dx + (size_t) n * C;
                float         r   = rstd[n];
                float         dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < C; c++) {
                    dot += w[c] * g[c] * xr[c];
                }
                float k = r * r * r * dot / C;
                for (int c = 0; c < C; c++) {
                    dxr[c] += r * w[c] * g[c] - k * xr[c];
                }
                if (dw_t) {
                    for (int c = 0; c < C; c++) {
                        dw_t[c] += g[c] * xr[c] * r;
                    }
                }
            }
        }
        if (dw) {
            reduce_partials(dw, partial, threads_, C);
        }
    }

    void add_bias(float * y, const float * bias, int N, int M, int ldy) override {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float * row = y + (size_t) n * ldy;
            for (int m = 0; m < M; m++) {
                row[m] += bias[m];
            }
        }
    }

    void bias_backward(float * dbias, const float * dy, int N, int M, int ldy) override {
        std::vector<float> partial((size_t) threads_ * M, 0.0f);
#pragma omp parallel num_threads(threads_)
        {
            float * p = partial.data() + (size_t) omp_get_thread_num() * M;
#pragma omp for schedule(static)
            for (int n = 0; n < N; n++) {
                const float * row = dy + (size_t) n * ldy;
                for (int m = 0; m < M; m++) {
                    p[m] += row[m];
                }
            }
        }
        reduce_partials(dbias, partial, threads_, M);
    }

    void add(float * y, const float * x, size_t count) override {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < count; i++) {
            y[i] += x[i];
        }
    }

    void mul_mask(float * y, const float * x, const uint8_t * mask, float scale, size_t count) override {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < count; i++) {
            y[i] = mask[i] ? x[i] * scale : 0.0f;
        }
    }

    void rope(float * x, int N, int stride, int heads, int D, const float * cos, const float * sin,
              bool inverse) override {
        int   half = D / 2;
        float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float * c = cos + (size_t) n * half;
            const float * s = sin + (size_t) n * half;
            for (int h = 0; h < heads; h++) {
                float * v = x + (size_t) n * stride + (size_t) h * D;
                for (int i = 0; i < half; i++) {
                    float x1    = v[i];
                    float x2    = v[i + half];
                    float si    = sign * s[i];
                    v[i]        = x1 * c[i] - x2 * si;
                    v[i + half] = x2 * c[i] + x1 * si;
                }
            }
        }
    }

    // Causal attention in blocks of kQueryBlock queries, flash-style: a block needs only the keys
    // up to its last query (from the window's start, with a sliding window), so the products skip
    // most of the masked upper triangle, and only a [block, T] tile of weights exists at a time.
    // The backward recomputes each tile from the saved log-sum-exp.
    void attention_forward(float * out, float * lse, const float * qkv, const int32_t * key_mask,
                           const int32_t * doc_start, const AttentionShape & a) override {
        const int   S     = (a.Hq + 2 * a.Hkv) * a.D;
        const int   O     = a.Hq * a.D;
        const int   group = a.Hq / a.Hkv;
        const float scale = 1.0f / std::sqrt((float) a.D);
        // Per-thread [block, keys] tiles (row stride T), allocated outside the parallel region so
        // that running out of memory is an exception, not a termination.
        const size_t       tile = (size_t) kQueryBlock * a.T;
        std::vector<float> tiles(tile * omp_get_max_threads());
#pragma omp parallel
        {
            float * P = tiles.data() + tile * omp_get_thread_num();
#pragma omp for schedule(static)
            for (int bh = 0; bh < a.B * a.Hq; bh++) {
                const int       b   = bh / a.Hq, h = bh % a.Hq, kvh = h / group;
                const float *   q   = qkv + (size_t) b * a.T * S + (size_t) h * a.D;
                const float *   k   = qkv + (size_t) b * a.T * S + (size_t) (a.Hq + kvh) * a.D;
                const float *   v   = qkv + (size_t) b * a.T * S + (size_t) (a.Hq + a.Hkv + kvh) * a.D;
                const int32_t * km  = key_mask + (size_t) b * a.T;
                const int32_t * ds  = doc_start ? doc_start + (size_t) b * a.T : nullptr;
                float *         o   = out + (size_t) b * a.T * O + (size_t) h * a.D;
                float *         lrow = lse + (size_t) bh * a.T;
                for (int i0 = 0; i0 < a.T; i0 += kQueryBlock) {
                    const int i1 = std::min(a.T, i0 + kQueryBlock), k0 = first_key(i0, a.sliding_window);
                    const int L  = i1 - k0;
                    // P = Q[i0:i1] K[k0:i1]^T, then the softmax of each row
                    gemm(false, true, i1 - i0, L, a.D, 1.0f, q + (size_t) i0 * S, S, k + (size_t) k0 * S, S, 0.0f,
                         P, a.T);
                    for (int i = i0; i < i1; i++) {
                        lrow[i] = softmax_row(P + (size_t) (i - i0) * a.T, k0, L, i, km, ds, a.sliding_window, scale);
                    }
                    // out[i0:i1] = P V[k0:i1]
                    gemm(false, false, i1 - i0, a.D, L, 1.0f, P, a.T, v + (size_t) k0 * S, S, 0.0f,
                         o + (size_t) i0 * O, O);
                }
            }
        }
    }

    void attention_backward(float * dqkv, const float * dout, const float * qkv, const float * lse,
                            const int32_t * key_mask, const int32_t * doc_start, const AttentionShape & a) override {
        const int   S     = (a.Hq + 2 * a.Hkv) * a.D;
        const int   O     = a.Hq * a.D;
        const int   group = a.Hq / a.Hkv;
        const float scale = 1.0f / std::sqrt((float) a.D);
        // One task per (sequence, kv head): the query heads of a group add into the same dK, dV,
        // so they run in order inside one task rather than racing.
        const size_t       tile = (size_t) kQueryBlock * a.T;  // [block, keys] tiles, row stride T
        std::vector<float> tiles(2 * tile * omp_get_max_threads());
#pragma omp parallel
        {
            float * P  = tiles.data() + 2 * tile * omp_get_thread_num();
            float * dS = P + tile;
#pragma omp for schedule(static)
            for (int bk = 0; bk < a.B * a.Hkv; bk++) {
                const int       b     = bk / a.Hkv, kvh = bk % a.Hkv;
                const float *   base  = qkv + (size_t) b * a.T * S;
                float *         dbase = dqkv + (size_t) b * a.T * S;
                const float *   k     = base + (size_t) (a.Hq + kvh) * a.D;
                const float *   v     = base + (size_t) (a.Hq + a.Hkv + kvh) * a.D;
                float *         dk    = dbase + (size_t) (a.Hq + kvh) * a.D;
                float *         dv    = dbase + (size_t) (a.Hq + a.Hkv + kvh) * a.D;
                const int32_t * km    = key_mask + (size_t) b * a.T;
                const int32_t * ds    = doc_start ? doc_start + (size_t) b * a.T : nullptr;
                for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                    const float * q    = base + (size_t) h * a.D;
                    float *       dq   = dbase + (size_t) h * a.D;
                    const float * lrow = lse + ((size_t) b * a.Hq + h) * a.T;
                    const float * dO   = dout + (size_t) b * a.T * O + (size_t) h * a.D;
                    for (int i0 = 0; i0 < a.T; i0 += kQueryBlock) {
                        const int     i1  = std::min(a.T, i0 + kQueryBlock), k0 = first_key(i0, a.sliding_window);
                        const int     L   = i1 - k0;
                        const float * dOb = dO + (size_t) i0 * O;
                        // P: the forward's weights, recomputed
                        gemm(false, true, i1 - i0, L, a.D, 1.0f, q + (size_t) i0 * S, S, k + (size_t) k0 * S, S, 0.0f,
                             P, a.T);
                        for (int i = i0; i < i1; i++) {
                            weights_row(P + (size_t) (i - i0) * a.T, k0, L, i, km, ds, a.sliding_window, scale,
                                        lrow[i]);
                        }
                        // dP = dO V^T; dV += P^T dO
                        gemm(false, true, i1 - i0, L, a.D, 1.0f, dOb, O, v + (size_t) k0 * S, S, 0.0f, dS, a.T);
                        gemm(true, false, L, a.D, i1 - i0, 1.0f, P, a.T, dOb, O, 1.0f, dv + (size_t) k0 * S, S);
                        // dS = P * (dP - sum_j P dP) * scale (softmax backward, then the score scale)
                        for (int r = 0; r < i1 - i0; r++) {
                            float *       row  = dS + (size_t) r * a.T;
                            const float * prow = P + (size_t) r * a.T;
                            float         dot  = 0.0f;
#pragma omp simd reduction(+ : dot)
                            for (int j = 0; j < L; j++) {
                                dot += prow[j] * row[j];
                            }
#pragma omp simd
                            for (int j = 0; j < L; j++) {
                                row[j] = prow[j] * (row[j] - dot) * scale;
                            }
                        }
                        // dQ += dS K; dK += dS^T Q
                        gemm(false, false, i1 - i0, a.D, L, 1.0f, dS, a.T, k + (size_t) k0 * S, S, 1.0f,
                             dq + (size_t) i0 * S, S);
                        gemm(true, false, L, a.D, i1 - i0, 1.0f, dS, a.T, q + (size_t) i0 * S, S, 1.0f,
                             dk + (size_t) k0 * S, S);
                    }
                }
            }
        }
    }

    // Tasks (sequence, block of kQueryBlock new queries, head), dynamically scheduled: each task
    // writes its own output rows with single-threaded products, so the result does not depend on
    // which thread runs it. A block's keys are those of its last query, from the window's start:
    // P = Q K^T over the prefix's columns then the cache's, softmax, out = P V over both. The
    // cache part is never empty: a query's own key is there.
    void attention_cached(const CachedSequence * seqs, int count, int Hq, int Hkv, int D,
                          int sliding_window) override {
        const int   R     = Hkv * D;  // key and value row
        const int   group = Hq / Hkv;
        const float scale = 1.0f / std::sqrt((float) D);
        int         tasks = 0;
        for (int s = 0; s < count; s++) {
            tasks += (seqs[s].n + kQueryBlock - 1) / kQueryBlock * Hq;
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int task = 0; task < tasks; task++) {
            int s = 0, t = task;  // t: the task's index within sequence s
            while (t >= (seqs[s].n + kQueryBlock - 1) / kQueryBlock * Hq) {
                t -= (seqs[s].n + kQueryBlock - 1) / kQueryBlock * Hq;
                s++;
            }
            const CachedSequence & c = seqs[s];
            const int h = t % Hq, kvh = h / group, i0 = t / Hq * kQueryBlock, i1 = std::min(c.n, i0 + kQueryBlock);
            const int m = i1 - i0;
            const int p0 = c.P + c.len - c.n + i0, p1 = p0 + m;  // the block's positions [p0, p1)
            const int k0 = first_key(p0, sliding_window), L = p1 - k0;  // its keys [k0, p1)
            const int split = std::clamp(c.P - k0, 0, L);              // columns [0, split) in the prefix
            const float * q  = c.q + (size_t) i0 * c.ldq + (size_t) h * D;
            float *       o  = c.out + (size_t) i0 * c.ldo + (size_t) h * D;
            const size_t  kv = (size_t) kvh * D;
            const size_t  own = (size_t) (k0 + split - c.P) * R + kv;  // the cache's first key used
            float *       P  = thread_tile((size_t) m * L);             // [m, L]
            if (split > 0) {
                gemm(false, true, m, split, D, 1.0f, q, c.ldq, c.prefix_k + (size_t) k0 * R + kv, R, 0.0f, P, L);
            }
            gemm(false, true, m, L - split, D, 1.0f, q, c.ldq, c.k + own, R, 0.0f, P + split, L);
            for (int r = 0; r < m; r++) {
                const int p = p0 + r;
                softmax_span(P + (size_t) r * L, L, first_key(p, sliding_window) - k0, p + 1 - k0, scale);
            }
            if (split > 0) {
                gemm(false, false, m, D, split, 1.0f, P, L, c.prefix_v + (size_t) k0 * R + kv, R, 0.0f, o, c.ldo);
            }
            gemm(false, false, m, D, L - split, 1.0f, P + split, L, c.v + own, R, split > 0 ? 1.0f : 0.0f, o, c.ldo);
        }
    }

    void swiglu_forward(float * out, const float * gu, int N, int F) override {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float * g = gu + (size_t) n * 2 * F;
            const float * u = g + F;
            float *       o = out + (size_t) n * F;
            for (int f = 0; f < F; f++) {
                float sig = 1.0f / (1.0f + fast_exp(-g[f]));
                o[f]      = g[f] * sig * u[f];
            }
        }
    }

    void swiglu_backward(float * dgu, const float * dout, const float * gu, int N, int F) override {
        // silu(g) = g s, s = sigmoid(g); d silu/dg = s (1 + g (1 - s)).
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float * g  = gu + (size_t) n * 2 * F;
            const float * u  = g + F;
            const float * d  = dout + (size_t) n * F;
            float *       dg = dgu + (size_t) n * 2 * F;
            float *       du = dg + F;
            for (int f = 0; f < F; f++) {
                float sig = 1.0f / (1.0f + fast_exp(-g[f]));
                float silu = g[f] * sig;
                du[f]      = d[f] * silu;
                dg[f]      = d[f] * u[f] * sig * (1.0f + g[f] * (1.0f - sig));
            }
        }
    }

    void logsoftmax_target(float * logp, float * lse, const float * logits, const int32_t * targets, int N,
                           int V) override {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float * row  = logits + (size_t) n * V;
            float         maxv = -INFINITY;
            for (int v = 0; v < V; v++) {
                maxv = std::max(maxv, row[v]);
            }
            float sum = 0.0f;
            for (int v = 0; v < V; v++) {
                sum += fast_exp(row[v] - maxv);
            }
            lse[n]  = maxv + std::log(sum);
            logp[n] = targets[n] >= 0 ? row[targets[n]] - lse[n] : 0.0f;
        }
    }

    void logsoftmax_target_backward(float * logits, const float * lse, const int32_t * targets,
                                    const float * dlogp, int N, int V) override {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float * row = logits + (size_t) n * V;
            if (targets[n] < 0 || dlogp[n] == 0.0f) {
                std::fill(row, row + V, 0.0f);
                continue;
            }
            float g = dlogp[n];
            float l = lse[n];
            for (int v = 0; v < V; v++) {
                row[v] = -g * fast_exp(row[v] - l);
            }
            row[targets[n]] += g;
        }
    }

private:
    int threads_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_backend(int threads) {
    if (threads < 0) {
        throw InputError(fmt::format("--threads must be at least 0 (0 = every core), got {}", threads));
    }
    // Several ranks of an MPI job on one machine (mpirun -np N) share its cores by default.
    if (threads <= 0 && local_ranks() > 1) {
        threads = std::max(1, omp_get_num_procs() / local_ranks());
    }
    return std::make_unique<CpuBackend>(threads);
}

}  // namespace paft
