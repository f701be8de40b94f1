// Benchmark: products with a typed weight (core/weight_kernels: bf16, f16, q8_0, nf4, fp4) against
// the f32 weight path (cblas_sgemv for one row, cblas_sgemm otherwise, on an f32 copy of the
// same matrix), for the linear layers of a 1.1B model (TinyLlama: [2048, 2048], [5632, 2048],
// [2048, 5632]) and a 7B one (Llama 2: [4096, 4096]; Mistral's MLP [14336, 4096]). For each M it
// times both ways, the few-row dot products and the panels + sgemm, and prints GFLOP/s, the
// weight's GB/s (what bounds decoding) and the ratio to f32: where the two ways cross is
// kWeightFewRows. For q8_0 above kWeightFewRows it also times q8_product (x quantized to q8_0,
// int8 products: what weight_matmul runs there) and prints its error against the panels. Prints
// figures only; it asserts nothing about time.
//
// For M <= 16 (memory-bound) the caches are flushed before each timed call, as a decoding step
// meets each weight once, coming from memory.
//
//   build/bench-weight-matmul --threads 2 [--shapes 1b,7b] [--ms 1,2,4,8,16,32,64,128,512]
//                             [--types bf16,f16,q8_0,nf4,fp4] [--backward]
#include "core/q8_product.h"
#include "core/weight_kernels.h"
#include "tensor/half.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace paft;

namespace {

struct Shape {
    const char * model;
    int64_t      rows, cols;  // W [rows, cols]: cols inputs, rows outputs
};

const Shape kShapes[] = {
    {"1b", 2048, 2048},  {"1b", 5632, 2048}, {"1b", 2048, 5632},
    {"7b", 4096, 4096}, {"7b", 14336, 4096},
};

// A weight of `type` built from src [rows, cols], owning its storage. 4-bit weights are
// quantize_bnb4's (double-quantized absmax, as QLoRA's default load_in_4bit).
struct BenchWeight {
    Weight                weight;
    std::vector<uint16_t> halves;
    Q8Weight              q8;
    Bnb4Weight            bnb4;
};

std::unique_ptr<BenchWeight> make_weight(WeightType type, const std::vector<float> & src, int64_t rows, int64_t cols) {
    auto b = std::make_unique<BenchWeight>();
    switch (type) {
    case WeightType::F32: b->weight = Weight{type, rows, cols, src.data()}; break;
    case WeightType::BF16:
    case WeightType::F16:
        b->halves.resize(src.size());
        for (size_t i = 0; i < src.size(); i++) {
            b->halves[i] = type == WeightType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        }
        b->weight = Weight{type, rows, cols, b->halves.data()};
        break;
    case WeightType::Q8_0:
        b->q8     = quantize_q8_0(src.data(), rows, cols);
        b->weight = b->q8.weight;
        break;
    case WeightType::NF4:
    case WeightType::FP4:
        b->bnb4   = quantize_bnb4(src.data(), rows, cols, type, true);
        b->weight = b->bnb4.weight;
        break;
    }
    return b;
}

// Evicts the weights from the caches (reads a buffer larger than this machine's L3 share).
void flush_caches() {
    static std::vector<float> big((size_t) 64 << 20, 1.0f);  // 256 MiB
    float                     s = 0;
    for (size_t i = 0; i < big.size(); i += 16) {
        s += big[i];
    }
    volatile float sink = s;
    (void) sink;
}

// The fastest of several timed calls of fn (seconds), after one untimed call: at least 5 calls,
// more while they take under budget_s in all. The minimum, not the median: on a shared machine
// (this one runs other jobs on its 2 cores) the others' work only ever adds time, in whole
// scheduler slices of a few ms that a 2-thread call waits out entirely, while the kernels' own
// time varies little.
double time_best(const std::function<void()> & fn, bool flush, double budget_s = 0.3, int max_calls = 20) {
    fn();
    double best = 1e30, spent = 0;
    for (int calls = 0; calls < 5 || (spent < budget_s && calls < max_calls); calls++) {
        if (flush) {
            flush_caches();
        }
        const double t0 = now_s();
        fn();
        const double t = now_s() - t0;
        best           = std::min(best, t);
        spent += t;
    }
    return best;
}

std::vector<std::string> split(const std::string & s) {
    std::vector<std::string> out;
    std::stringstream        in(s);
    for (std::string item; std::getline(in, item, ',');) {
        out.push_back(item);
    }
    return out;
}

WeightType type_from_name(const std::string & name) {
    for (WeightType t : {WeightType::F32, WeightType::BF16, WeightType::F16, WeightType::Q8_0, WeightType::NF4,
                         WeightType::FP4}) {
        if (name == weight_type_name(t)) {
            return t;
        }
    }
    throw std::invalid_argument("unknown weight type " + name);
}

}  // namespace

int main(int argc, char ** argv) {
    int         threads = 2;
    std::string shapes_arg = "1b,7b", ms_arg = "1,2,4,8,16,32,64,128,512", types_arg = "bf16,f16,q8_0,nf4,fp4";
    int64_t     few_rows_max = 128;
    bool        backward     = false;
    CLI::App    app{"Typed-weight products (bf16, f16, q8_0, nf4, fp4) against the f32 weight path"};
    app.add_option("--threads", threads)->capture_default_str();
    app.add_option("--shapes", shapes_arg, "1b, 7b, or shapes as ROWSxCOLS (2048x5632)")->capture_default_str();
    app.add_option("--ms", ms_arg, "rows of x")->capture_default_str();
    app.add_option("--types", types_arg)->capture_default_str();
    app.add_option("--few-rows-max", few_rows_max, "largest M the few-row way is timed at")->capture_default_str();
    app.add_flag("--backward", backward, "Also time the backward (dx += dy W)");
    CLI11_PARSE(app, argc, argv);

    // As the CPU backend sets them: a fixed team, BLAS on the same OpenMP threads.
    omp_set_dynamic(0);
    omp_set_max_active_levels(1);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    std::vector<int64_t> ms;
    for (const auto & m : split(ms_arg)) {
        ms.push_back(std::stoll(m));
    }
    std::vector<WeightType> types;
    for (const auto & t : split(types_arg)) {
        types.push_back(type_from_name(t));
    }
    const auto wanted = split(shapes_arg);

    fmt::print("{} threads, load average {}; few-row way up to M = {}, panels above (kWeightFewRows)\n", threads,
               load_average(), kWeightFewRows);
    fmt::print("columns: f32 = the f32 weight path (sgemv at M = 1, sgemm above); few = the typed dot products; panel "
               "= typed panels + sgemm; GFLOP/s and weight GB/s of the faster typed way; x f32 = f32 time / that "
               "time\n");
    std::mt19937 rng(1);
    for (const Shape & shape : kShapes) {
        const std::string dims = fmt::format("{}x{}", shape.rows, shape.cols);
        if (std::find(wanted.begin(), wanted.end(), shape.model) == wanted.end() &&
            std::find(wanted.begin(), wanted.end(), dims) == wanted.end()) {
            continue;
        }
        const int64_t N = shape.rows, K = shape.cols;
        std::vector<float>              src((size_t) (N * K));
        std::normal_distribution<float> normal(0.0f, 0.02f);
        for (float & v : src) {
            v = normal(rng);
        }
        std::vector<std::unique_ptr<BenchWeight>> weights;
        for (WeightType t : types) {
            weights.push_back(make_weight(t, src, N, K));
        }
        fmt::print("\n{} W [{}, {}]: f32 {:.1f} MB", shape.model, N, K, N * K * 4 / 1e6);
        for (const auto & w : weights) {
            fmt::print(", {} {:.1f} MB", weight_type_name(w->weight.type), w->weight.bytes() / 1e6);
        }
        fmt::print("\n{:>5} {:>5} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7}\n", "M", "type", "f32 ms", "few ms", "panel ms",
                   "GFLOP/s", "W GB/s", "x f32");
        for (int64_t M : ms) {
            std::vector<float>                    x((size_t) (M * K)), y((size_t) (M * N));
            std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
            for (float & v : x) {
                v = uniform(rng);
            }
            const bool   flush = M <= 16;
            const double flops = 2.0 * (double) M * N * K;
            const double f32_s = time_best(
                [&] {
                    if (M == 1) {
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int) N, (int) K, 1.0f, src.data(), (int) K,
                                    x.data(), 1, 0.0f, y.data(), 1);
                    } else {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) N, (int) K, 1.0f, x.data(),
                                    (int) K, src.data(), (int) K, 0.0f, y.data(), (int) N);
                    }
                },
                flush);
            fmt::print("{:>5} {:>5} {:>9.3f} {:>9} {:>9} {:>8.1f} {:>8.1f}\n", M, "f32", f32_s * 1e3, "", "",
                       flops / f32_s / 1e9, N * K * 4 / f32_s / 1e9);
            for (const auto & w : weights) {
                const Weight & W     = w->weight;
                double         few_s = 0;
                if (M <= few_rows_max) {
                    few_s = time_best([&] { weight_matmul_few_rows(x.data(), K, W, 0.0f, y.data(), N, M); }, flush);
                }
                const double panel_s =
                    time_best([&] { weight_matmul_panels(x.data(), K, W, 0.0f, y.data(), N, M); }, flush);
                const double      best_s = few_s > 0 ? std::min(few_s, panel_s) : panel_s;
                const std::string few    = few_s > 0 ? fmt::format("{:.3f}", few_s * 1e3) : "-";
                fmt::print("{:>5} {:>5} {:>9} {:>9} {:>9.3f} {:>8.1f} {:>8.1f} {:>7.2f}\n", M, weight_type_name(W.type),
                           "", few, panel_s * 1e3, flops / best_s / 1e9, W.bytes() / best_s / 1e9, f32_s / best_s);
                if (W.type == WeightType::Q8_0 && M > kWeightFewRows) {
                    // weight_matmul's way for many rows of a q8_0 weight: x quantized too, int8 products.
                    // Its error: the worst |q8 - panels| over the outputs, relative to the largest |panels|.
                    std::vector<float> exact(y.size());
                    weight_matmul_panels(x.data(), K, W, 0.0f, exact.data(), N, M);
                    const double q8_s = time_best([&] { q8_product(x.data(), K, W, 0.0f, y.data(), N, M); }, flush);
                    double       diff = 0, peak = 0;
                    for (size_t i = 0; i < y.size(); i++) {
                        diff = std::max(diff, (double) std::fabs(y[i] - exact[i]));
                        peak = std::max(peak, (double) std::fabs(exact[i]));
                    }
                    fmt::print("{:>5} {:>5} {:>9} {:>9} {:>9.3f} {:>8.1f} {:>8.1f} {:>7.2f}  (x as q8_0 too{}; "
                               "x panels {:.2f}; error {:.1e} of the largest output)\n",
                               M, "q8xq8", "", "", q8_s * 1e3, flops / q8_s / 1e9, W.bytes() / q8_s / 1e9, f32_s / q8_s,
                               q8_product_is_vectorized() ? ", AVX-512 VNNI" : ", portable loop", panel_s / q8_s,
                               diff / peak);
                }
            }
        }
        if (backward) {
            fmt::print("backward dx[M, {}] += dy[M, {}] W\n{:>5} {:>5} {:>9} {:>8} {:>7}\n", K, N, "M", "type", "ms",
                       "GFLOP/s", "x f32");
            for (int64_t M : ms) {
                std::vector<float> dy((size_t) (M * N), 0.5f), dx((size_t) (M * K), 0.0f);
                const double       flops = 2.0 * (double) M * N * K;
                const double       f32_s = time_best(
                    [&] {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) M, (int) K, (int) N, 1.0f,
                                    dy.data(), (int) N, src.data(), (int) K, 1.0f, dx.data(), (int) K);
                    },
                    M <= 16);
                fmt::print("{:>5} {:>5} {:>9.3f} {:>8.1f}\n", M, "f32", f32_s * 1e3, flops / f32_s / 1e9);
                for (const auto & w : weights) {
                    const double s = time_best(
                        [&] { weight_matmul_backward(dx.data(), K, dy.data(), N, w->weight, M); }, M <= 16);
                    fmt::print("{:>5} {:>5} {:>9.3f} {:>8.1f} {:>7.2f}\n", M, weight_type_name(w->weight.type), s * 1e3,
                               flops / s / 1e9, f32_s / s);
                }
            }
        }
    }
    return 0;
}
