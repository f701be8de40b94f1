// Checks of every op of the CPU backend (src/core/cpu_backend.cpp) against first principles.
//
// Gradients: each op's backward is compared with central finite differences of its forward.
// The objective is L = sum(out * R) for a fixed random R (sum_n dlogp[n] * logp[n] for the
// log-softmax), so the analytic gradient is the backward run with dout = R. The numerical one
// perturbs every input coordinate (the inputs are small), runs the f32 forward and sums L in
// double. Accumulating backwards start from a random prior gradient, which is subtracted, so
// they are also checked to add rather than overwrite.
//
// Forwards: compared with straightforward double-precision implementations written here.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/backend.h"
#include "test_util.h"

using namespace paft;

namespace {

using Vec  = std::vector<float>;
using DVec = std::vector<double>;

// Gradient tolerance on max|analytic - numeric| / max|numeric|. The forward runs in f32, so L
// carries ~1e-6 of rounding noise, ~1e-4 after dividing by the 2h = 2e-2 step, and central
// differences add an O(h^2) ~ 1e-4 truncation error. 1e-2 sits well above both and well below
// what a wrong formula gives (a missing term, factor or sign is an O(1) relative error).
constexpr double kGradTol = 1e-2;
constexpr float  kStep    = 1e-2f;
// Forward tolerance on max|got - ref| / max|ref|: a handful of f32 roundings per output.
constexpr double kFwdTol = 1e-5;

// Three threads on a two-core box: uneven static partitions exercise the per-thread partials.
Backend & cpu() {
    static std::unique_ptr<Backend> backend = make_backend(3);
    return *backend;
}

// sum(out * R) in double.
double weighted_sum(const Vec & out, const Vec & R) {
    double s = 0.0;
    for (size_t i = 0; i < out.size(); i++) {
        s += (double) out[i] * R[i];
    }
    return s;
}

// Central differences of L() over every coordinate of x, which L reads (perturbed in place and
// restored). The denominator is the step actually taken in f32, (x+h) - (x-h).
DVec numeric_grad(Vec & x, const std::function<double()> & L, float h = kStep) {
    DVec g(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        const float x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i]            = xp;
        const double lp = L();
        x[i]            = xm;
        const double lm = L();
        x[i]            = x0;
        g[i]            = (lp - lm) / ((double) xp - (double) xm);
    }
    return g;
}

// after - prior: what an accumulating backward added.
Vec added(const Vec & after, const Vec & prior) {
    Vec d(after.size());
    for (size_t i = 0; i < d.size(); i++) {
        d[i] = after[i] - prior[i];
    }
    return d;
}

// Columns [col0, col0 + ncols) of a row-major [rows, stride] buffer, packed.
template <typename T>
std::vector<T> columns(const std::vector<T> & v, int rows, int stride, int col0, int ncols) {
    std::vector<T> out;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < ncols; c++) {
            out.push_back(v[(size_t) r * stride + col0 + c]);
        }
    }
    return out;
}

template <typename T> double max_abs(const std::vector<T> & v) {
    double m = 0.0;
    for (T x : v) {
        m = std::max(m, std::fabs((double) x));
    }
    return m;
}

// max|got - ref| / max|ref| <= tol, with both sides required to be non-zero somewhere so that a
// backward writing nothing (or a degenerate test input) cannot pass.
::testing::AssertionResult close(const Vec & got, const DVec & ref, double tol) {
    if (got.size() != ref.size()) {
        return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
    }
    const double scale = max_abs(ref);
    if (max_abs(got) == 0.0 || scale == 0.0) {
        return ::testing::AssertionFailure() << "all zeros: max|got| = " << max_abs(got) << ", max|ref| = " << scale;
    }
    double worst = 0.0;
    size_t at    = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double e = std::fabs((double) got[i] - ref[i]);
        if (!(e <= worst)) {  // also catches NaN
            worst = e;
            at    = i;
        }
    }
    if (!(worst / scale <= tol)) {
        return ::testing::AssertionFailure() << "relative error " << worst / scale << " > " << tol << " (worst at ["
                                             << at << "]: got " << got[at] << ", expected " << ref[at] << ")";
    }
    return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------- double references

// out[N,C] = x * rstd * w, rstd[N] = 1/sqrt(mean(x^2) + eps)
void rmsnorm_ref(DVec & out, DVec & rstd, const Vec & x, const Vec & w, int N, int C, double eps) {
    out.assign((size_t) N * C, 0.0);
    rstd.assign(N, 0.0);
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int c = 0; c < C; c++) {
            ss += (double) x[n * C + c] * x[n * C + c];
        }
        rstd[n] = 1.0 / std::sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) {
            out[n * C + c] = x[n * C + c] * rstd[n] * w[c];
        }
    }
}

// Rotate-half on the first heads*D columns of each row of x [N, stride]; cos/sin [N, D/2].
DVec rope_ref(const Vec & x, int N, int stride, int heads, int D, const Vec & cos, const Vec & sin) {
    DVec out(x.begin(), x.end());
    const int half = D / 2;
    for (int n = 0; n < N; n++) {
        for (int h = 0; h < heads; h++) {
            const size_t base = (size_t) n * stride + (size_t) h * D;
            for (int i = 0; i < half; i++) {
                const double c = cos[n * half + i], s = sin[n * half + i];
                const double x1 = x[base + i], x2 = x[base + i + half];
                out[base + i]        = x1 * c - x2 * s;
                out[base + i + half] = x2 * c + x1 * s;
            }
        }
    }
    return out;
}

// Whether query i may attend to key j of sequence b (doc_start: empty, or where query i's packed
// example starts).
bool key_allowed(const std::vector<int32_t> & key_mask, const std::vector<int32_t> & doc_start,
                 const AttentionShape & a, int b, int i, int j) {
    const size_t row = (size_t) b * a.T;
    return j <= i && key_mask[row + j] != 0 && (a.sliding_window == 0 || i - j < a.sliding_window) &&
           (doc_start.empty() || j >= doc_start[row + i]);
}

// out [B*T, Hq*D]: masked softmax of q k^T / sqrt(D) times v; no allowed key -> 0.
// lse [B, Hq, T]: log sum_j exp(q_i k_j / sqrt(D)) over the allowed keys; -inf when there is none.
void attention_ref(DVec & out, DVec & lse, const Vec & qkv, const std::vector<int32_t> & key_mask,
                   const std::vector<int32_t> & doc_start, const AttentionShape & a) {
    const int S = (a.Hq + 2 * a.Hkv) * a.D, O = a.Hq * a.D, group = a.Hq / a.Hkv;
    out.assign((size_t) a.B * a.T * O, 0.0);
    DVec probs((size_t) a.B * a.Hq * a.T * a.T, 0.0);  // [B, Hq, T, T]
    lse.assign((size_t) a.B * a.Hq * a.T, -INFINITY);
    for (int b = 0; b < a.B; b++) {
        for (int h = 0; h < a.Hq; h++) {
            const int kvh = h / group;
            auto      at  = [&](int t, int head, int d) { return (double) qkv[((size_t) b * a.T + t) * S + head * a.D + d]; };
            for (int i = 0; i < a.T; i++) {
                double * p = probs.data() + (((size_t) b * a.Hq + h) * a.T + i) * a.T;
                double   maxv = -INFINITY;
                for (int j = 0; j < a.T; j++) {
                    if (key_allowed(key_mask, doc_start, a, b, i, j)) {
                        double s = 0.0;
                        for (int d = 0; d < a.D; d++) {
                            s += at(i, h, d) * at(j, a.Hq + kvh, d);
                        }
                        p[j] = s / std::sqrt((double) a.D);
                        maxv = std::max(maxv, p[j]);
                    }
                }
                if (maxv == -INFINITY) {
                    continue;  // no allowed key: zero probabilities and output
                }
                double sum = 0.0;
                for (int j = 0; j < a.T; j++) {
                    p[j] = key_allowed(key_mask, doc_start, a, b, i, j) ? std::exp(p[j] - maxv) : 0.0;
                    sum += p[j];
                }
                lse[((size_t) b * a.Hq + h) * a.T + i] = maxv + std::log(sum);
                for (int j = 0; j < a.T; j++) {
                    p[j] /= sum;
                    for (int d = 0; d < a.D; d++) {
                        out[((size_t) b * a.T + i) * O + h * a.D + d] += p[j] * at(j, a.Hq + a.Hkv + kvh, d);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- gemm

// M = 1 takes the matrix-vector path, 2..16 rows against a transposed B the few-rows kernel (K = 37:
// its 16 lanes and a tail), more rows sgemm; beta = 0 must ignore C's old contents, even NaN.
TEST(Ops, GemmMatchesNaiveLoopForAllTransposes) {
    std::mt19937 rng(1);
    const int    N = 4;
    const float  alpha = 0.75f;
    for (int K : {5, 37})
    for (int M : {3, 1, 20}) {
        for (float beta : {0.5f, 0.0f}) {
            for (bool ta : {false, true}) {
                for (bool tb : {false, true}) {
                    SCOPED_TRACE(::testing::Message() << "M=" << M << " K=" << K << " beta=" << beta << " trans_a=" << ta
                                                      << " trans_b=" << tb);
                    // A is stored [K, M] when transposed, else [M, K]; B [N, K] or [K, N]; each row padded by 2.
                    const int lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 2, ldc = N + 2;
                    const Vec A = uniform_floats(rng, (size_t) (ta ? K : M) * lda);
                    const Vec B = uniform_floats(rng, (size_t) (tb ? N : K) * ldb);
                    Vec       C = uniform_floats(rng, (size_t) M * ldc);
                    if (beta == 0.0f) {
                        C[0] = NAN;
                    }
                    const Vec C0 = C;
                    auto a = [&](int i, int k) {
                        return (double) (ta ? A[(size_t) k * lda + i] : A[(size_t) i * lda + k]);
                    };
                    auto b = [&](int k, int j) {
                        return (double) (tb ? B[(size_t) j * ldb + k] : B[(size_t) k * ldb + j]);
                    };

                    cpu().gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);

                    DVec ref(C0.begin(), C0.end());  // padding columns must stay as they were
                    for (int i = 0; i < M; i++) {
                        for (int j = 0; j < N; j++) {
                            double s = 0.0;
                            for (int k = 0; k < K; k++) {
                                s += a(i, k) * b(k, j);
                            }
                            const double c0           = beta != 0.0f ? beta * C0[(size_t) i * ldc + j] : 0.0;
                            ref[(size_t) i * ldc + j] = alpha * s + c0;
                        }
                    }
                    EXPECT_TRUE(close(C, ref, kFwdTol));
                    for (int i = 0; i < M; i++) {
                        EXPECT_EQ(C[(size_t) i * ldc + N], C0[(size_t) i * ldc + N]);
                        EXPECT_EQ(C[(size_t) i * ldc + N + 1], C0[(size_t) i * ldc + N + 1]);
                    }
                }
            }
        }
    }
}

TEST(Ops, EmbeddingGradientWithRepeatedIds) {
    std::mt19937                 rng(2);
    const int                    V = 5, C = 3, N = 6;
    const std::vector<int32_t>   ids = {1, 3, 1, 0, 3, 1};  // 1 three times, 3 twice; 2 and 4 unused
    Vec                          table = uniform_floats(rng, (size_t) V * C);  // [V, C]
    const Vec                    R     = uniform_floats(rng, (size_t) N * C);  // [N, C]
    Vec                          out((size_t) N * C);

    cpu().embedding_forward(out.data(), ids.data(), Weight{WeightType::F32, V, C, table.data()}, N, C);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            EXPECT_EQ(out[n * C + c], table[ids[n] * C + c]);
        }
    }

    const Vec prior  = uniform_floats(rng, table.size());
    Vec       dtable = prior;
    cpu().embedding_backward(dtable.data(), R.data(), ids.data(), N, C);

    const DVec num = numeric_grad(table, [&] {
        cpu().embedding_forward(out.data(), ids.data(), Weight{WeightType::F32, V, C, table.data()}, N, C);
        return weighted_sum(out, R);
    });
    EXPECT_TRUE(close(added(dtable, prior), num, kGradTol));
}

// ---------------------------------------------------------------- rmsnorm

TEST(Ops, RmsnormForwardMatchesReference) {
    std::mt19937 rng(3);
    const int    N = 3, C = 8;
    const float  eps = 1e-5f;
    const Vec    x = uniform_floats(rng, (size_t) N * C), w = uniform_floats(rng, C);
    Vec          out((size_t) N * C), rstd(N);
    cpu().rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);

    DVec ref_out, ref_rstd;
    rmsnorm_ref(ref_out, ref_rstd, x, w, N, C, eps);
    EXPECT_TRUE(close(out, ref_out, kFwdTol));
    EXPECT_TRUE(close(rstd, ref_rstd, kFwdTol));
}

TEST(Ops, RmsnormGradients) {
    std::mt19937 rng(4);
    const int    N = 3, C = 8;
    const float  eps = 1e-5f;
    Vec          x = uniform_floats(rng, (size_t) N * C), w = uniform_floats(rng, C);  // x [N, C], w [C]
    const Vec    R = uniform_floats(rng, (size_t) N * C);
    Vec          out((size_t) N * C), rstd(N);
    auto         L = [&] {
        cpu().rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
        return weighted_sum(out, R);
    };

    L();  // rstd for the backward
    const Vec dx_prior = uniform_floats(rng, x.size()), dw_prior = uniform_floats(rng, w.size());
    Vec       dx = dx_prior, dw = dw_prior;
    cpu().rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);

    // dw may be null: dx must come out the same.
    Vec dx_only = dx_prior;
    cpu().rmsnorm_backward(dx_only.data(), nullptr, R.data(), x.data(), w.data(), rstd.data(), N, C);
    EXPECT_EQ(dx_only, dx);

    const DVec num_x = numeric_grad(x, L);
    const DVec num_w = numeric_grad(w, L);
    EXPECT_TRUE(close(added(dx, dx_prior), num_x, kGradTol)) << "dx";
    EXPECT_TRUE(close(added(dw, dw_prior), num_w, kGradTol)) << "dw";
}

// ---------------------------------------------------------------- bias

TEST(Ops, AddBiasAndBiasBackward) {
    std::mt19937 rng(5);
    const int    N = 4, M = 5, ldy = 7;  // y [N, ldy], bias on the first M columns
    const Vec    y0 = uniform_floats(rng, (size_t) N * ldy);
    Vec          bias = uniform_floats(rng, M);
    const Vec    R    = uniform_floats(rng, (size_t) N * M);
    Vec          y;
    auto         L = [&] {
        y = y0;
        cpu().add_bias(y.data(), bias.data(), N, M, ldy);
        double s = 0.0;
        for (int n = 0; n < N; n++) {
            for (int m = 0; m < M; m++) {
                s += (double) y[n * ldy + m] * R[n * M + m];
            }
        }
        return s;
    };

    L();
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < ldy; m++) {
            EXPECT_EQ(y[n * ldy + m], m < M ? y0[n * ldy + m] + bias[m] : y0[n * ldy + m]) << n << "," << m;
        }
    }

    // dy = R laid out with stride ldy; the padding columns hold junk that must be ignored.
    Vec dy((size_t) N * ldy, 1e6f);
    for (int n = 0; n < N; n++) {
        std::copy(R.begin() + n * M, R.begin() + (n + 1) * M, dy.begin() + n * ldy);
    }
    const Vec prior = uniform_floats(rng, M);
    Vec       dbias = prior;
    cpu().bias_backward(dbias.data(), dy.data(), N, M, ldy);
    EXPECT_TRUE(close(added(dbias, prior), numeric_grad(bias, L), kGradTol));
}

// ---------------------------------------------------------------- mul_mask

TEST(Ops, MulMaskGradient) {
    std::mt19937               rng(6);
    const size_t               count = 12;
    const float                scale = 1.25f;
    const std::vector<uint8_t> mask  = {1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0};
    Vec                        x     = uniform_floats(rng, count);
    const Vec                  R     = uniform_floats(rng, count);
    Vec                        y(count);
    auto                       L = [&] {
        cpu().mul_mask(y.data(), x.data(), mask.data(), scale, count);
        return weighted_sum(y, R);
    };

    L();
    for (size_t i = 0; i < count; i++) {
        EXPECT_EQ(y[i], mask[i] ? x[i] * scale : 0.0f);
    }
    // The op is linear and diagonal, so it is its own backward: dx = mul_mask(dout).
    Vec dx(count);
    cpu().mul_mask(dx.data(), R.data(), mask.data(), scale, count);
    EXPECT_TRUE(close(dx, numeric_grad(x, L), kGradTol));
}

// ---------------------------------------------------------------- rope

struct RopeCase {
    int N = 3, heads = 2, D = 4;
    int stride = 2 * 4 + 3;  // 3 trailing columns the op must not touch
    Vec cos, sin;            // [N, D/2]

    explicit RopeCase(std::mt19937 & rng) {
        const Vec angle = uniform_floats(rng, (size_t) N * D / 2, -3.0f, 3.0f);
        for (float t : angle) {
            cos.push_back(std::cos(t));
            sin.push_back(std::sin(t));
        }
    }
    void apply(Vec & x, bool inverse) const { cpu().rope(x.data(), N, stride, heads, D, cos.data(), sin.data(), inverse); }
};

TEST(Ops, RopeForwardMatchesReference) {
    std::mt19937   rng(7);
    const RopeCase rc(rng);
    const Vec      x0 = uniform_floats(rng, (size_t) rc.N * rc.stride);
    Vec            x  = x0;
    rc.apply(x, false);
    EXPECT_TRUE(close(x, rope_ref(x0, rc.N, rc.stride, rc.heads, rc.D, rc.cos, rc.sin), kFwdTol));
    for (int n = 0; n < rc.N; n++) {
        for (int c = rc.heads * rc.D; c < rc.stride; c++) {
            EXPECT_EQ(x[n * rc.stride + c], x0[n * rc.stride + c]);
        }
    }
}

TEST(Ops, RopeInverseIsTheBackward) {
    std::mt19937   rng(8);
    const RopeCase rc(rng);
    Vec            x = uniform_floats(rng, (size_t) rc.N * rc.stride);
    const Vec      R = uniform_floats(rng, x.size());
    Vec            y;
    // The gradient of sum(rope(x) * R) is J^T R; J is a rotation, so J^T is the inverse rotation.
    Vec dx = R;
    rc.apply(dx, true);
    const DVec num = numeric_grad(x, [&] {
        y = x;
        rc.apply(y, false);
        return weighted_sum(y, R);
    });
    EXPECT_TRUE(close(dx, num, kGradTol));
}

// ---------------------------------------------------------------- attention

// B = 2 sequences of T (6 by default); sequence 1 is left-padded by two, so its query rows 0 and 1
// have no allowed key (causal, and both keys they could see are padding). `packed`: each sequence
// holds several examples (T = 150: starts 0, 37, 94 and, after the padding, 2, 70), across the
// kernel's 64-query blocks.
struct AttentionCase {
    AttentionShape       a;
    int                  S, O;
    std::vector<int32_t> key_mask, doc_start;
    Vec                  qkv, out, lse;  // [B*T, S], [B*T, Hq*D], [B, Hq, T]

    AttentionCase(std::mt19937 & rng, int Hq, int Hkv, int window, int T = 6, bool packed = false) {
        a = AttentionShape{2, T, Hq, Hkv, 4, window};
        key_mask.assign((size_t) 2 * T, 1);
        key_mask[T] = key_mask[T + 1] = 0;
        if (packed) {
            const std::vector<std::vector<int>> starts = {{0, 37, 94}, {0, 2, 70}};
            for (int b = 0; b < 2; b++) {
                for (int t = 0; t < T; t++) {
                    int start = 0;
                    for (int s0 : starts[b]) {
                        start = s0 <= t ? s0 : start;
                    }
                    doc_start.push_back(start);
                }
            }
        }
        S                = (Hq + 2 * Hkv) * a.D;
        O                = Hq * a.D;
        qkv              = uniform_floats(rng, (size_t) a.B * a.T * S);
        out.resize((size_t) a.B * a.T * O);
        lse.resize((size_t) a.B * a.Hq * a.T);
    }
    const int32_t * starts() const { return doc_start.empty() ? nullptr : doc_start.data(); }
    void            forward() { cpu().attention_forward(out.data(), lse.data(), qkv.data(), key_mask.data(), starts(), a); }
    Vec  backward(const Vec & dout, const Vec & prior) {
        Vec dqkv = prior;
        cpu().attention_backward(dqkv.data(), dout.data(), qkv.data(), lse.data(), key_mask.data(), starts(), a);
        return dqkv;
    }
};

void check_attention_forward(int Hq, int Hkv, int window, int T = 6, bool packed = false) {
    std::mt19937  rng(9);
    AttentionCase ac(rng, Hq, Hkv, window, T, packed);
    ac.forward();
    DVec ref_out, ref_lse;
    attention_ref(ref_out, ref_lse, ac.qkv, ac.key_mask, ac.doc_start, ac.a);
    EXPECT_TRUE(close(ac.out, ref_out, kFwdTol)) << "out";
    // lse: -inf exactly where the reference has no allowed key, else close to it.
    Vec  finite_lse;
    DVec finite_ref;
    for (size_t i = 0; i < ref_lse.size(); i++) {
        ASSERT_EQ(std::isinf(ref_lse[i]), std::isinf(ac.lse[i])) << "lse row " << i;
        if (!std::isinf(ref_lse[i])) {
            finite_lse.push_back(ac.lse[i]);
            finite_ref.push_back(ref_lse[i]);
        }
    }
    EXPECT_TRUE(close(finite_lse, finite_ref, kFwdTol)) << "lse";
    // The padded query rows of sequence 1 (t = 0, 1) are exactly zero.
    for (int t = 0; t < 2; t++) {
        for (int c = 0; c < ac.O; c++) {
            EXPECT_EQ(ac.out[(size_t) (ac.a.T + t) * ac.O + c], 0.0f) << "t=" << t << " c=" << c;
        }
    }
}

void check_attention_gradient(int Hq, int Hkv, int window, int T = 6, bool packed = false) {
    std::mt19937  rng(10);
    AttentionCase ac(rng, Hq, Hkv, window, T, packed);
    const Vec     R     = uniform_floats(rng, ac.out.size());
    const Vec     prior = uniform_floats(rng, ac.qkv.size());
    ac.forward();
    const Vec dqkv = added(ac.backward(R, prior), prior);

    const DVec num = numeric_grad(ac.qkv, [&] {
        ac.forward();
        return weighted_sum(ac.out, R);
    });
    // Compare q, k and v separately, so each must be non-zero and right on its own.
    const int rows = ac.a.B * ac.a.T, D = ac.a.D;
    struct Part {
        const char * name;
        int          col0, ncols;
    };
    for (Part p : {Part{"dq", 0, Hq * D}, Part{"dk", Hq * D, Hkv * D}, Part{"dv", (Hq + Hkv) * D, Hkv * D}}) {
        EXPECT_TRUE(close(columns(dqkv, rows, ac.S, p.col0, p.ncols), columns(num, rows, ac.S, p.col0, p.ncols),
                          kGradTol))
            << p.name;
    }
}

TEST(Ops, AttentionForwardGqaPadded) { check_attention_forward(4, 2, 0); }
TEST(Ops, AttentionForwardGqaPaddedWindow3) { check_attention_forward(4, 2, 3); }
TEST(Ops, AttentionForwardMhaPadded) { check_attention_forward(2, 2, 0); }

TEST(Ops, AttentionGradientGqaPadded) { check_attention_gradient(4, 2, 0); }
TEST(Ops, AttentionGradientGqaPaddedWindow3) { check_attention_gradient(4, 2, 3); }
TEST(Ops, AttentionGradientMhaPadded) { check_attention_gradient(2, 2, 0); }

// T = 150 spans three query blocks of the CPU kernel (64, 64, 22); a window of 70 reaches back
// across a block boundary.
TEST(Ops, AttentionForwardLongBlocks) { check_attention_forward(2, 1, 0, 150); }
TEST(Ops, AttentionForwardLongBlocksWindow70) { check_attention_forward(2, 1, 70, 150); }
TEST(Ops, AttentionGradientLongBlocks) { check_attention_gradient(2, 1, 0, 150); }
TEST(Ops, AttentionGradientLongBlocksWindow70) { check_attention_gradient(2, 1, 70, 150); }
TEST(Ops, AttentionForwardPacked) { check_attention_forward(2, 1, 0, 150, true); }
TEST(Ops, AttentionForwardPackedWindow50) { check_attention_forward(2, 1, 50, 150, true); }
TEST(Ops, AttentionGradientPacked) { check_attention_gradient(2, 1, 0, 150, true); }

TEST(Ops, AttentionBackwardIsDeterministic) {
    std::mt19937  rng(11);
    AttentionCase ac(rng, 4, 2, 3);
    const Vec     R = uniform_floats(rng, ac.out.size());
    ac.forward();
    const Vec zeros(ac.qkv.size(), 0.0f);
    const Vec first  = ac.backward(R, zeros);
    const Vec second = ac.backward(R, zeros);
    ASSERT_EQ(first.size(), second.size());
    EXPECT_EQ(0, std::memcmp(first.data(), second.data(), first.size() * sizeof(float)));
}

// ---------------------------------------------------------------- attention against caches

// One sequence of attention_cached: q [n, ldq] (padded rows), keys and values of the prefix
// [P, Hkv*D] and of the own cache [len, Hkv*D], out [n, ldo].
struct CachedCase {
    int n, P, len;
    Vec q, out, prefix_k, prefix_v, k, v;
    CachedCase(int n, int P, int len) : n(n), P(P), len(len) {}
};

// The reference: query i at position p = P + len - n + i over the keys j <= p (and p - j < window),
// in double, one position at a time.
DVec cached_attention_ref(const CachedCase & c, int ldq, int ldo, int Hq, int Hkv, int D, int window) {
    DVec      out(c.out.size(), 0.0);
    const int R = Hkv * D, group = Hq / Hkv;
    for (int i = 0; i < c.n; i++) {
        const int p = c.P + c.len - c.n + i;
        for (int h = 0; h < Hq; h++) {
            const int    kvh = h / group;
            auto         key = [&](int j) { return j < c.P ? &c.prefix_k[(size_t) j * R] : &c.k[(size_t) (j - c.P) * R]; };
            auto         val = [&](int j) { return j < c.P ? &c.prefix_v[(size_t) j * R] : &c.v[(size_t) (j - c.P) * R]; };
            DVec         w(p + 1, 0.0);
            double       maxv = -INFINITY, sum = 0.0;
            for (int j = 0; j <= p; j++) {
                if (window > 0 && p - j >= window) {
                    continue;
                }
                double s = 0.0;
                for (int d = 0; d < D; d++) {
                    s += (double) c.q[(size_t) i * ldq + h * D + d] * key(j)[kvh * D + d];
                }
                w[j] = s / std::sqrt((double) D);
                maxv = std::max(maxv, w[j]);
            }
            for (int j = 0; j <= p; j++) {
                w[j] = window > 0 && p - j >= window ? 0.0 : std::exp(w[j] - maxv);
                sum += w[j];
            }
            for (int j = 0; j <= p; j++) {
                for (int d = 0; d < D; d++) {
                    out[(size_t) i * ldo + h * D + d] += w[j] / sum * val(j)[kvh * D + d];
                }
            }
        }
    }
    return out;
}

// Three sequences in one call: a 3-token step after a 5-token prefix and 6 cached positions; a
// 150-token prefill (three 64-query blocks) without prefix; a 1-token step after a 70-token
// prefix. GQA 4:2, with and without a sliding window (3, and 70 across a block boundary).
void check_attention_cached(int window) {
    std::mt19937 rng(20);
    const int    Hq = 4, Hkv = 2, D = 4, R = Hkv * D, ldq = Hq * D + 3, ldo = Hq * D + 2;
    std::vector<CachedCase> cases = {{3, 5, 9}, {150, 0, 150}, {1, 70, 1}};
    std::vector<CachedSequence> seqs;
    for (CachedCase & c : cases) {
        c.q        = uniform_floats(rng, (size_t) c.n * ldq, -2.0f, 2.0f);
        c.out      = Vec((size_t) c.n * ldo, 7.0f);  // the padding columns must keep their 7
        c.prefix_k = uniform_floats(rng, (size_t) c.P * R, -2.0f, 2.0f);
        c.prefix_v = uniform_floats(rng, (size_t) c.P * R);
        c.k        = uniform_floats(rng, (size_t) c.len * R, -2.0f, 2.0f);
        c.v        = uniform_floats(rng, (size_t) c.len * R);
        seqs.push_back({c.q.data(), ldq, c.out.data(), ldo, c.n, c.P ? c.prefix_k.data() : nullptr,
                        c.P ? c.prefix_v.data() : nullptr, c.P, c.k.data(), c.v.data(), c.len});
    }
    cpu().attention_cached(seqs.data(), (int) seqs.size(), Hq, Hkv, D, window);
    for (size_t s = 0; s < cases.size(); s++) {
        const CachedCase & c   = cases[s];
        const DVec         ref = cached_attention_ref(c, ldq, ldo, Hq, Hkv, D, window);
        EXPECT_TRUE(close(columns(c.out, c.n, ldo, 0, Hq * D), columns(ref, c.n, ldo, 0, Hq * D), kFwdTol))
            << "sequence " << s;
        for (int i = 0; i < c.n; i++) {
            EXPECT_EQ(c.out[(size_t) i * ldo + Hq * D], 7.0f);
            EXPECT_EQ(c.out[(size_t) i * ldo + Hq * D + 1], 7.0f);
        }
    }
}

TEST(Ops, AttentionCached) { check_attention_cached(0); }
TEST(Ops, AttentionCachedWindow3) { check_attention_cached(3); }
TEST(Ops, AttentionCachedWindow70) { check_attention_cached(70); }

// ---------------------------------------------------------------- swiglu

TEST(Ops, SwigluForwardMatchesReference) {
    std::mt19937 rng(12);
    const int    N = 3, F = 5;
    const Vec    gu = uniform_floats(rng, (size_t) N * 2 * F);  // [N, 2F]: gate then up
    Vec          out((size_t) N * F);
    cpu().swiglu_forward(out.data(), gu.data(), N, F);
    DVec ref(out.size());
    for (int n = 0; n < N; n++) {
        for (int f = 0; f < F; f++) {
            const double g = gu[n * 2 * F + f], u = gu[n * 2 * F + F + f];
            ref[n * F + f] = g / (1.0 + std::exp(-g)) * u;
        }
    }
    EXPECT_TRUE(close(out, ref, kFwdTol));
}

TEST(Ops, SwigluGradients) {
    std::mt19937 rng(13);
    const int    N = 3, F = 5;
    Vec          gu = uniform_floats(rng, (size_t) N * 2 * F);
    const Vec    R  = uniform_floats(rng, (size_t) N * F);
    Vec          out((size_t) N * F);
    // swiglu_backward overwrites: junk in dgu beforehand must not survive.
    Vec dgu(gu.size(), 7.0f);
    cpu().swiglu_backward(dgu.data(), R.data(), gu.data(), N, F);

    const DVec num = numeric_grad(gu, [&] {
        cpu().swiglu_forward(out.data(), gu.data(), N, F);
        return weighted_sum(out, R);
    });
    EXPECT_TRUE(close(columns(dgu, N, 2 * F, 0, F), columns(num, N, 2 * F, 0, F), kGradTol)) << "dgate";
    EXPECT_TRUE(close(columns(dgu, N, 2 * F, F, F), columns(num, N, 2 * F, F, F), kGradTol)) << "dup";
}

// ---------------------------------------------------------------- log-softmax

TEST(Ops, LogsoftmaxTargetForwardMatchesReference) {
    std::mt19937               rng(14);
    const int                  N = 4, V = 7;
    const std::vector<int32_t> targets = {2, -1, 6, 0};
    Vec                        logits  = uniform_floats(rng, (size_t) N * V);  // [N, V]
    for (int v = 0; v < V; v++) {
        logits[2 * V + v] += 40.0f;  // a large row: the max must be subtracted before exp
    }
    Vec logp(N), lse(N);
    cpu().logsoftmax_target(logp.data(), lse.data(), logits.data(), targets.data(), N, V);

    DVec ref_lse(N), ref_logp(N);
    for (int n = 0; n < N; n++) {
        const float * row  = logits.data() + n * V;
        const double  maxv = *std::max_element(row, row + V);
        double        sum  = 0.0;
        for (int v = 0; v < V; v++) {
            sum += std::exp(row[v] - maxv);
        }
        ref_lse[n]  = maxv + std::log(sum);
        ref_logp[n] = targets[n] >= 0 ? row[targets[n]] - ref_lse[n] : 0.0;
    }
    EXPECT_TRUE(close(lse, ref_lse, kFwdTol)) << "lse";
    EXPECT_TRUE(close(logp, ref_logp, kFwdTol)) << "logp";
    EXPECT_EQ(logp[1], 0.0f);
}

TEST(Ops, LogsoftmaxTargetGradient) {
    std::mt19937               rng(15);
    const int                  N = 4, V = 7;
    const std::vector<int32_t> targets = {2, -1, 6, 0};
    Vec                        logits  = uniform_floats(rng, (size_t) N * V);
    const Vec                  dlogp   = uniform_floats(rng, N);
    Vec                        logp(N), lse(N);
    // L = sum_n dlogp[n] * logp[n]
    auto L = [&] {
        cpu().logsoftmax_target(logp.data(), lse.data(), logits.data(), targets.data(), N, V);
        return weighted_sum(logp, dlogp);
    };

    L();
    Vec grad = logits;  // the backward works in place on a copy of the logits
    cpu().logsoftmax_target_backward(grad.data(), lse.data(), targets.data(), dlogp.data(), N, V);
    EXPECT_TRUE(close(grad, numeric_grad(logits, L), kGradTol));
    for (int v = 0; v < V; v++) {
        EXPECT_EQ(grad[1 * V + v], 0.0f) << "row with target -1, v=" << v;
    }
}

}  // namespace
