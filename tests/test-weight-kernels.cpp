// Checks of the typed-weight products (src/core/weight_kernels.cpp, core/q8_product.cpp) against
// double-precision references computed from dequantize_weight_rows (whose values are checked
// separately, against llama.cpp's and bitsandbytes' formats): every way (few-row dot products,
// panels + sgemm, and for q8_0 the int8 product of quantized x) at every M, forward and backward,
// every weight type, shapes with column tails and odd row counts, beta, row strides, and
// bit-identical results for 1, 2 and 3 threads.
//
// Tolerance: |got - ref| <= kTol * (sum of |terms| + |beta * y|) per output. Both ways compute
// with the exact f32 weight values and differ from the reference only by f32 rounding of the
// products and sums: ~1e-7 per operation, growing like sqrt(K) for the K-term sums.
#include "core/q8_product.h"
#include "core/weight_kernels.h"

#include "tensor/half.h"
#include "tensor/quants.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace paft;

namespace {

constexpr double kTol = 1e-5;

using Vec = std::vector<float>;

// A weight of each type with its own storage, and its dequantized f32 values.
struct TestWeight {
    Weight               weight;
    std::vector<uint8_t> bytes;   // values or codes
    Vec                  floats;  // F32 values; NF4/FP4: plain absmax or the double-quantized scales
    std::vector<uint8_t> absmax_q;
    Bnb4Weight           bnb4;  // when built by quantize_bnb4
    Q8Weight             q8;
    Vec                  dequantized;  // [rows, cols]
};

enum class Bnb4Absmax { Plain, DoubleQuant };

// W [rows, cols] of `type`: F32/BF16/F16 round uniform values; Q8_0 quantizes them; NF4/FP4 take
// random codes (every code appears) and random absmax, plain or double-quantized.
std::unique_ptr<TestWeight> make_weight(WeightType type, int64_t rows, int64_t cols, uint32_t seed,
                                        Bnb4Absmax absmax = Bnb4Absmax::Plain) {
    std::mt19937 rng(seed);
    auto         t   = std::make_unique<TestWeight>();
    const size_t n   = (size_t) (rows * cols);
    const Vec    src = uniform_floats(rng, n);
    switch (type) {
    case WeightType::F32:
        t->floats = src;
        t->weight = Weight{type, rows, cols, t->floats.data()};
        break;
    case WeightType::BF16:
    case WeightType::F16: {
        t->bytes.resize(2 * n);
        auto * h = reinterpret_cast<uint16_t *>(t->bytes.data());
        for (size_t i = 0; i < n; i++) {
            h[i] = type == WeightType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        }
        t->weight = Weight{type, rows, cols, t->bytes.data()};
        break;
    }
    case WeightType::Q8_0:
        t->q8     = quantize_q8_0(src.data(), rows, cols);
        t->weight = t->q8.weight;
        break;
    case WeightType::NF4:
    case WeightType::FP4: {
        t->bytes.resize((n + 1) / 2);
        std::uniform_int_distribution<int> byte(0, 255);
        for (auto & b : t->bytes) {
            b = (uint8_t) byte(rng);
        }
        t->weight            = Weight{type, rows, cols, t->bytes.data()};
        const int64_t blocks = t->weight.blocks();
        if (absmax == Bnb4Absmax::Plain) {
            t->floats        = uniform_floats(rng, (size_t) blocks, 0.01f, 2.0f);
            t->weight.absmax = t->floats.data();
        } else {
            // Every code of the dynamic map, scales per 256 blocks, and an offset, as
            // bnb_4bit_use_double_quant stores them.
            t->absmax_q.resize((size_t) blocks);
            for (auto & q : t->absmax_q) {
                q = (uint8_t) byte(rng);
            }
            const int64_t scales    = (blocks + kBnb4AbsmaxBlock - 1) / kBnb4AbsmaxBlock;
            t->floats               = uniform_floats(rng, (size_t) scales, 0.1f, 1.0f);
            t->weight.absmax_q      = t->absmax_q.data();
            t->weight.absmax_scale  = t->floats.data();
            t->weight.absmax_offset = 0.75f;
        }
        break;
    }
    }
    t->dequantized.resize(n);
    dequantize_weight_rows(t->weight, 0, rows, t->dequantized.data());
    return t;
}

// The ways, each taken at every M; Auto is weight_matmul's own choice. Q8 (q8_0 weights only) is
// q8_product, which quantizes x too.
enum class Way { Auto, FewRows, Panels, Q8 };

const char * way_name(Way way) {
    switch (way) {
    case Way::Auto: return "auto";
    case Way::FewRows: return "few-rows";
    case Way::Panels: return "panels";
    case Way::Q8: return "q8xq8";
    }
    return "?";
}

// Whether weight_matmul hands this product to q8_product.
bool auto_takes_q8(const Weight & W, int64_t M) { return W.type == WeightType::Q8_0 && M > kWeightFewRows; }

void forward(Way way, const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy, int64_t M) {
    switch (way) {
    case Way::Auto: weight_matmul(x, ldx, W, beta, y, ldy, M); return;
    case Way::FewRows: weight_matmul_few_rows(x, ldx, W, beta, y, ldy, M); return;
    case Way::Panels: weight_matmul_panels(x, ldx, W, beta, y, ldy, M); return;
    case Way::Q8: q8_product(x, ldx, W, beta, y, ldy, M); return;
    }
}

// The worst |got - ref| / (sum |terms| + |prior term|) over the outputs. NaN fails any bound.
struct Reference {
    std::vector<double> value, scale;
};

double worst_error(const float * got, int64_t ld, const Reference & ref, int64_t M, int64_t N) {
    double worst = 0.0;
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            const double g = got[m * ld + n], v = ref.value[(size_t) (m * N + n)], s = ref.scale[(size_t) (m * N + n)];
            const double e = std::fabs(g - v) / std::max(s, 1e-30);
            if (!(e <= worst)) {
                worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
            }
        }
    }
    return worst;
}

// y[m, n] = sum_k x[m, k] W[n, k] in double, W dequantized.
Reference forward_reference(const Vec & x, int64_t ldx, const Vec & w, int64_t rows, int64_t cols, int64_t M) {
    Reference r;
    r.value.resize((size_t) (M * rows));
    r.scale.resize((size_t) (M * rows));
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < rows; n++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < cols; k++) {
                const double t = (double) x[(size_t) (m * ldx + k)] * w[(size_t) (n * cols + k)];
                s += t;
                a += std::fabs(t);
            }
            r.value[(size_t) (m * rows + n)] = s;
            r.scale[(size_t) (m * rows + n)] = a;
        }
    }
    return r;
}

// x's rows [M, cols] (stride ldx) as q8_0 blocks, back in f32: quantize_rows is checked against
// llama.cpp's own quantizer in test-quants.
Vec q8_activations(const Vec & x, int64_t ldx, int64_t cols, int64_t M) {
    Vec                  out((size_t) (M * cols));
    std::vector<uint8_t> blocks(ggml_row_bytes(GgmlType::Q8_0, cols));
    for (int64_t m = 0; m < M; m++) {
        quantize_rows(GgmlType::Q8_0, x.data() + m * ldx, 1, cols, blocks.data());
        dequantize_rows(GgmlType::Q8_0, blocks.data(), 1, cols, out.data() + m * cols);
    }
    return out;
}

// The same plus beta * y0[m, n].
Reference with_beta(Reference r, float beta, const Vec & y0, int64_t ldy, int64_t M, int64_t rows) {
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < rows; n++) {
            const double p = (double) beta * y0[(size_t) (m * ldy + n)];
            r.value[(size_t) (m * rows + n)] += p;
            r.scale[(size_t) (m * rows + n)] += std::fabs(p);
        }
    }
    return r;
}

// dx[m, c] = dx0[m, c] + sum_n dy[m, n] W[n, c] in double.
Reference backward_reference(const Vec & dy, int64_t lddy, const Vec & w, int64_t rows, int64_t cols, const Vec & dx0,
                             int64_t lddx, int64_t M) {
    Reference r;
    r.value.assign((size_t) (M * cols), 0.0);
    r.scale.assign((size_t) (M * cols), 0.0);
    for (int64_t m = 0; m < M; m++) {
        double * v = r.value.data() + m * cols;
        double * a = r.scale.data() + m * cols;
        for (int64_t c = 0; c < cols; c++) {
            v[c] = dx0[(size_t) (m * lddx + c)];
            a[c] = std::fabs(v[c]);
        }
        for (int64_t n = 0; n < rows; n++) {
            const double d = dy[(size_t) (m * lddy + n)];
            for (int64_t c = 0; c < cols; c++) {
                const double t = d * w[(size_t) (n * cols + c)];
                v[c] += t;
                a[c] += std::fabs(t);
            }
        }
    }
    return r;
}

struct Shape {
    int64_t rows, cols;
};

// Row tails (odd rows: a tile of one weight row), column tails (not a multiple of 16, of 64),
// 4-bit rows that start inside a byte (odd cols) or inside an absmax block (cols % 64 != 0).
const Shape kShapes[] = {{96, 160}, {130, 256}, {64, 4096}, {33, 96}, {7, 75}};
const int64_t kMs[]   = {1, 2, 3, 5, 16, 17, 64, 200};

const WeightType kTypes[] = {WeightType::F32, WeightType::BF16, WeightType::F16,
                             WeightType::Q8_0, WeightType::NF4, WeightType::FP4};

bool type_takes(WeightType type, const Shape & s) { return type != WeightType::Q8_0 || s.cols % kQ8Block == 0; }

std::string label(WeightType type, const Shape & s, int64_t M, Way way) {
    return std::string(weight_type_name(type)) + " [" + std::to_string(s.rows) + ", " + std::to_string(s.cols) +
           "] M=" + std::to_string(M) + " " + way_name(way);
}

// Runs the forward and backward of `t` at every M both ways with strided buffers and checks
// values, untouched padding, and beta.
void check_weight(const TestWeight & t, const std::string & what) {
    const Weight & W    = t.weight;
    const int64_t  rows = W.rows, cols = W.cols;
    const Shape    shape{rows, cols};
    std::mt19937   rng(7);
    for (int64_t M : kMs) {
        // Strides wider than the rows; the padding must come back untouched.
        const int64_t ldx = cols + 3, ldy = rows + 5;
        const Vec     x   = uniform_floats(rng, (size_t) (M * ldx));
        const Vec     y0  = uniform_floats(rng, (size_t) (M * ldy));
        const Reference product = forward_reference(x, ldx, t.dequantized, rows, cols, M);
        // What q8_product computes: the product with x's rows quantized to q8_0.
        const bool      q8         = W.type == WeightType::Q8_0;
        const Reference q8_reference = q8 ? forward_reference(q8_activations(x, ldx, cols, M), cols, t.dequantized,
                                                            rows, cols, M)
                                        : Reference{};
        for (float beta : {0.0f, 0.5f, 1.0f}) {
            for (Way way : {Way::Auto, Way::FewRows, Way::Panels, Way::Q8}) {
                const bool quantized_x = way == Way::Q8 || (way == Way::Auto && auto_takes_q8(W, M));
                if (way == Way::Q8 && !q8) {
                    continue;
                }
                const Reference ref = with_beta(quantized_x ? q8_reference : product, beta, y0, ldy, M, rows);
                Vec y = y0;
                if (beta == 0.0f) {
                    // beta 0 must not read y: NaN there must not come through.
                    for (int64_t m = 0; m < M; m++) {
                        std::fill(y.begin() + m * ldy, y.begin() + m * ldy + rows,
                                  std::numeric_limits<float>::quiet_NaN());
                    }
                }
                forward(way, x.data(), ldx, W, beta, y.data(), ldy, M);
                const double err = worst_error(y.data(), ldy, ref, M, rows);
                EXPECT_LE(err, kTol) << what << " " << label(W.type, shape, M, way) << " beta=" << beta;
                for (int64_t m = 0; m < M; m++) {
                    for (int64_t n = rows; n < ldy; n++) {
                        ASSERT_EQ(y[(size_t) (m * ldy + n)], y0[(size_t) (m * ldy + n)]) << "padding written";
                    }
                }
            }
        }
        // Backward: dx [M, cols] (stride cols + 2) += dy [M, rows] (stride rows + 1) · W.
        const int64_t lddx = cols + 2, lddy = rows + 1;
        const Vec     dy   = uniform_floats(rng, (size_t) (M * lddy));
        const Vec     dx0  = uniform_floats(rng, (size_t) (M * lddx));
        const Reference ref = backward_reference(dy, lddy, t.dequantized, rows, cols, dx0, lddx, M);
        Vec             dx  = dx0;
        weight_matmul_backward(dx.data(), lddx, dy.data(), lddy, W, M);
        EXPECT_LE(worst_error(dx.data(), lddx, ref, M, cols), kTol)
            << what << " backward " << label(W.type, shape, M, Way::Auto);
        for (int64_t m = 0; m < M; m++) {
            for (int64_t c = cols; c < lddx; c++) {
                ASSERT_EQ(dx[(size_t) (m * lddx + c)], dx0[(size_t) (m * lddx + c)]) << "padding written";
            }
        }
    }
}

}  // namespace

TEST(WeightKernels, EveryTypeShapeAndM) {
    uint32_t seed = 1;
    for (WeightType type : kTypes) {
        for (const Shape & s : kShapes) {
            if (!type_takes(type, s)) {
                continue;
            }
            check_weight(*make_weight(type, s.rows, s.cols, seed++), "");
        }
    }
}

TEST(WeightKernels, DoubleQuantizedAbsmax) {
    uint32_t seed = 100;
    for (WeightType type : {WeightType::NF4, WeightType::FP4}) {
        for (const Shape & s : kShapes) {
            check_weight(*make_weight(type, s.rows, s.cols, seed++, Bnb4Absmax::DoubleQuant), "double-quant");
        }
    }
}

// 4-bit weights as load_in_4bit makes them (quantize_bnb4), plain and double-quantized absmax.
TEST(WeightKernels, QuantizedBnb4Weights) {
    std::mt19937 rng(5);
    for (WeightType type : {WeightType::NF4, WeightType::FP4}) {
        for (bool double_quant : {false, true}) {
            const int64_t rows = 96, cols = 320;
            const Vec     src  = uniform_floats(rng, (size_t) (rows * cols));
            TestWeight    t;
            t.bnb4   = quantize_bnb4(src.data(), rows, cols, type, double_quant);
            t.weight = t.bnb4.weight;
            t.dequantized.resize(src.size());
            dequantize_weight_rows(t.weight, 0, rows, t.dequantized.data());
            check_weight(t, double_quant ? "quantize_bnb4 double-quant" : "quantize_bnb4");
        }
    }
}

// M = 0 changes nothing; a weight without columns gives beta * y (zeros for beta 0), both ways.
TEST(WeightKernels, EmptyProducts) {
    auto t = make_weight(WeightType::BF16, 8, 32, 3);
    Vec  x(64, 1.0f), y(64, 5.0f);
    weight_matmul(x.data(), 32, t->weight, 0.0f, y.data(), 8, 0);
    weight_matmul_backward(x.data(), 32, y.data(), 8, t->weight, 0);
    EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](float v) { return v == 5.0f; }));
    EXPECT_TRUE(std::all_of(x.begin(), x.end(), [](float v) { return v == 1.0f; }));
    for (WeightType type : kTypes) {
        auto no_cols = make_weight(type, 8, 0, 4);
        for (Way way : {Way::FewRows, Way::Panels}) {
            Vec y0(3 * 8, 5.0f), y2 = y0;
            std::fill(y0.begin(), y0.end(), std::numeric_limits<float>::quiet_NaN());
            forward(way, x.data(), 0, no_cols->weight, 0.0f, y0.data(), 8, 3);
            forward(way, x.data(), 0, no_cols->weight, 2.0f, y2.data(), 8, 3);
            const auto is = [](float want) { return [want](float v) { return v == want; }; };
            EXPECT_TRUE(std::all_of(y0.begin(), y0.end(), is(0.0f))) << weight_type_name(type);
            EXPECT_TRUE(std::all_of(y2.begin(), y2.end(), is(10.0f))) << weight_type_name(type);
        }
        weight_matmul_backward(x.data(), 0, y.data(), 8, no_cols->weight, 3);
    }
}

// Every output is computed by one thread in a fixed order: 1, 2 and 3 threads give the same bits,
// both ways, forward and backward.
TEST(WeightKernels, SameBitsForAnyThreadCount) {
    const int    saved = omp_get_max_threads();
    std::mt19937 rng(11);
    uint32_t     seed = 200;
    for (WeightType type : kTypes) {
        for (const Shape & s : {Shape{130, 256}, Shape{64, 4096}, Shape{33, 96}}) {
            auto t = make_weight(type, s.rows, s.cols, seed++, Bnb4Absmax::DoubleQuant);
            for (int64_t M : {1, 5, 16, 17, 200}) {
                const Vec x  = uniform_floats(rng, (size_t) (M * s.cols));
                const Vec y0 = uniform_floats(rng, (size_t) (M * s.rows));
                const Vec dy = uniform_floats(rng, (size_t) (M * s.rows));
                std::vector<Vec> results;
                for (int threads : {1, 2, 3}) {
                    omp_set_num_threads(threads);
                    Vec all;
                    for (Way way : {Way::FewRows, Way::Panels, Way::Q8}) {
                        Vec y = y0;
                        if (way != Way::Q8 || type == WeightType::Q8_0) {
                            forward(way, x.data(), s.cols, t->weight, 0.5f, y.data(), s.rows, M);
                        }
                        all.insert(all.end(), y.begin(), y.end());
                    }
                    Vec dx = x;
                    weight_matmul_backward(dx.data(), s.cols, dy.data(), s.rows, t->weight, M);
                    all.insert(all.end(), dx.begin(), dx.end());
                    results.push_back(all);
                }
                const size_t ny = (size_t) (M * s.rows), nx = (size_t) (M * s.cols);
                const struct {
                    const char * what;
                    size_t       first, count;
                } parts[] = {{"few-rows", 0, ny}, {"panels", ny, ny}, {"q8xq8", 2 * ny, ny}, {"backward", 3 * ny, nx}};
                for (size_t i = 1; i < results.size(); i++) {
                    for (const auto & part : parts) {
                        EXPECT_EQ(std::memcmp(results[0].data() + part.first, results[i].data() + part.first,
                                              part.count * sizeof(float)),
                                  0)
                            << weight_type_name(type) << " [" << s.rows << ", " << s.cols << "] M=" << M << " "
                            << part.what << ": " << (i + 1) << " threads differ from 1";
                    }
                }
            }
        }
    }
    omp_set_num_threads(saved);
}

// A bf16 weight gives the product of its f32 conversion through cblas_sgemm (the f32 weight path),
// within 1e-6 of the largest output: the same math, summed in another order.
TEST(WeightKernels, Bf16MatchesItsF32ConversionThroughSgemm) {
    std::mt19937 rng(13);
    for (const Shape & s : {Shape{64, 4096}, Shape{130, 256}, Shape{7, 75}}) {
        auto t = make_weight(WeightType::BF16, s.rows, s.cols, 300);
        for (int64_t M : kMs) {
            const Vec x = uniform_floats(rng, (size_t) (M * s.cols));
            Vec       want((size_t) (M * s.rows)), got(want.size());
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) s.rows, (int) s.cols, 1.0f, x.data(),
                        (int) s.cols, t->dequantized.data(), (int) s.cols, 0.0f, want.data(), (int) s.rows);
            for (Way way : {Way::Auto, Way::FewRows, Way::Panels}) {
                forward(way, x.data(), s.cols, t->weight, 0.0f, got.data(), s.rows, M);
                double diff = 0, peak = 0;
                for (size_t i = 0; i < want.size(); i++) {
                    diff = std::max(diff, (double) std::fabs(got[i] - want[i]));
                    peak = std::max(peak, (double) std::fabs(want[i]));
                }
                EXPECT_LE(diff, 1e-6 * peak) << label(WeightType::BF16, s, M, way);
            }
        }
    }
}

// weight_matmul takes the dot products up to kWeightFewRows rows and above them panels, or
// q8_product for a q8_0 weight: its results are those of the way it picks, bit for bit.
TEST(WeightKernels, AutoPicksByRowCount) {
    std::mt19937 rng(17);
    for (WeightType type : {WeightType::Q8_0, WeightType::BF16}) {
        auto t = make_weight(type, 130, 256, 400);
        for (int64_t M : {kWeightFewRows, kWeightFewRows + 1}) {
            const Vec x = uniform_floats(rng, (size_t) (M * 256));
            Vec       a((size_t) (M * 130)), b(a.size());
            weight_matmul(x.data(), 256, t->weight, 0.0f, a.data(), 130, M);
            const Way way = M <= kWeightFewRows ? Way::FewRows : type == WeightType::Q8_0 ? Way::Q8 : Way::Panels;
            forward(way, x.data(), 256, t->weight, 0.0f, b.data(), 130, M);
            EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
                << weight_type_name(type) << " M=" << M << " " << way_name(way);
        }
    }
}

// q8_product's kernel (AVX-512 VNNI where built with it) gives the bits of its one-output-at-a-time
// loop: weight rows in groups of 16 with partial groups and task tails (64 rows a task), tiles of
// 6 x rows with every remainder, beta, strides.
TEST(WeightKernels, Q8ProductMatchesItsReferenceLoop) {
    std::mt19937 rng(19);
    uint32_t     seed = 500;
    for (const Shape & s : {Shape{1, 32}, Shape{15, 64}, Shape{16, 96}, Shape{17, 256}, Shape{40, 160},
                            Shape{130, 256}, Shape{64, 4096}}) {
        auto t = make_weight(WeightType::Q8_0, s.rows, s.cols, seed++);
        for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 11, 13, 40}) {
            const int64_t ldx = s.cols + 5, ldy = s.rows + 3;
            const Vec     x   = uniform_floats(rng, (size_t) (M * ldx), -3.0f, 3.0f);
            const Vec     y0  = uniform_floats(rng, (size_t) (M * ldy));
            for (float beta : {0.0f, 0.75f}) {
                Vec got = y0, want = y0;
                q8_product(x.data(), ldx, t->weight, beta, got.data(), ldy, M);
                q8_product_reference(x.data(), ldx, t->weight, beta, want.data(), ldy, M);
                EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
                    << "[" << s.rows << ", " << s.cols << "] M=" << M << " beta=" << beta
                    << (q8_product_is_vectorized() ? " (AVX-512 VNNI)" : " (portable)");
            }
        }
    }
    auto bf16 = make_weight(WeightType::BF16, 4, 32, 1);
    Vec  x(32), y(4);
    EXPECT_THROW(q8_product(x.data(), 32, bf16->weight, 0.0f, y.data(), 4, 1), std::invalid_argument);
}

// What quantizing x costs: each x value moves by at most half a step d/2 (d = its block's
// absmax / 127), plus the f16 rounding of d (|q| <= 127 steps of 2^-11 d), so an output moves by at
// most sum_k 0.57 d_k |w_k|; against the exact product of the dequantized weight.
TEST(WeightKernels, Q8ProductErrorIsBoundedByHalfAStep) {
    std::mt19937 rng(23);
    const int64_t rows = 48, cols = 512, M = 40;
    auto          t    = make_weight(WeightType::Q8_0, rows, cols, 600);
    Vec           x    = uniform_floats(rng, (size_t) (M * cols), -1.0f, 1.0f);
    for (int64_t i = 0; i < M * cols; i += 97) {
        x[(size_t) i] *= 20.0f;  // outliers widen their blocks' steps
    }
    Vec y((size_t) (M * rows));
    q8_product(x.data(), cols, t->weight, 0.0f, y.data(), rows, M);
    const Reference exact = forward_reference(x, cols, t->dequantized, rows, cols, M);
    double          worst = 0;
    for (int64_t m = 0; m < M; m++) {
        std::vector<double> step((size_t) (cols / 32));
        for (int64_t b = 0; b < cols / 32; b++) {
            double amax = 0;
            for (int64_t k = 0; k < 32; k++) {
                amax = std::max(amax, (double) std::fabs(x[(size_t) (m * cols + 32 * b + k)]));
            }
            step[(size_t) b] = amax / 127;
        }
        for (int64_t n = 0; n < rows; n++) {
            double bound = 0;
            for (int64_t k = 0; k < cols; k++) {
                bound += 0.57 * step[(size_t) (k / 32)] * std::fabs(t->dequantized[(size_t) (n * cols + k)]);
            }
            const size_t i   = (size_t) (m * rows + n);
            const double err = std::fabs(y[i] - exact.value[i]);
            EXPECT_LE(err, bound + 1e-5 * exact.scale[i]) << "m=" << m << " n=" << n;
            worst = std::max(worst, err / bound);
        }
    }
    // The bound is not vacuous: some outputs come within a tenth of it.
    EXPECT_GT(worst, 0.1);
}
