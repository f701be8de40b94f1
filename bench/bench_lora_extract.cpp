// Benchmark: factorize_delta (dgesdd in double) on deltas of Llama-7B-like shapes at rank 16,
// single-threaded as the merge workers call it, against the same SVD by sgesdd in float: time,
// and how far sgesdd's kept singular values, retained energy and rank-r product are from the
// double ones. Prints figures; asserts nothing about time.
//
//   build/bench-lora-extract --rank 16 --reps 2
//
// The delta: a merged LoRA-like low-rank part (rank 32, singular values decaying by 0.8) plus
// Gaussian noise 100 times smaller, so the rank-16 truncation drops a real tail.
#include "core/random.h"
#include "merge/lora_extract.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <lapacke.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <vector>

#include <time.h>

using namespace paft;

namespace {

// CPU seconds of the calling thread: on a busy machine closer to the unloaded wall time than the
// wall clock is (the work is single-threaded).
double thread_cpu_s() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double) t.tv_sec + 1e-9 * (double) t.tv_nsec;
}

struct Timing {
    double wall = 1e30, cpu = 1e30;  // best of the repetitions
};

template <class Fn>
void time_best(Timing & t, Fn fn) {
    const double w0 = now_s(), c0 = thread_cpu_s();
    fn();
    t.wall = std::min(t.wall, now_s() - w0);
    t.cpu  = std::min(t.cpu, thread_cpu_s() - c0);
}

std::vector<float> lora_like_delta(int rows, int cols, uint64_t seed) {
    const int          k = 32;
    Random             rng(seed);
    std::vector<float> x((size_t) rows * k), y((size_t) k * cols), d((size_t) rows * cols);
    for (float & v : x) {
        v = rng.normal() / std::sqrt((float) rows);
    }
    for (float & v : y) {
        v = rng.normal() / std::sqrt((float) cols);
    }
    for (int i = 0; i < rows; i++) {
        for (int c = 0; c < cols; c++) {
            double sum = 0.0;
            for (int j = 0; j < k; j++) {
                sum += std::pow(0.8, j) * x[(size_t) i * k + j] * y[(size_t) j * cols + c];
            }
            d[(size_t) i * cols + c] = (float) (sum + 0.01 * rng.normal() / std::sqrt((double) std::max(rows, cols)));
        }
    }
    return d;
}

// The same factorisation in float by sgesdd, single-threaded (the layout and thread handling of
// factorize_delta): singular values and the rank-r product B * A [rows, cols] in double.
struct FloatSvd {
    std::vector<double> s, product;
};

FloatSvd sgesdd_factorize(const std::vector<float> & delta, int rows, int cols, int rank) {
    const int          k = std::min(rows, cols), kept = std::min(rank, k);
    std::vector<float> a(delta), s(k), u((size_t) rows * k), vt((size_t) k * cols);
    const int          threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', cols, rows, a.data(), cols, s.data(), vt.data(),
                                           cols, u.data(), k);
    omp_set_num_threads(threads);
    if (info != 0) {
        std::fprintf(stderr, "sgesdd failed: %d\n", (int) info);
        std::exit(1);
    }
    FloatSvd out{std::vector<double>(s.begin(), s.end()), std::vector<double>((size_t) rows * cols, 0.0)};
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < kept; j++) {
            const double b = (double) u[(size_t) i * k + j] * s[j];
            for (int c = 0; c < cols; c++) {
                out.product[(size_t) i * cols + c] += b * vt[(size_t) j * cols + c];
            }
        }
    }
    return out;
}

std::vector<double> product(const LowRank & f) {
    std::vector<double> p((size_t) f.rows * f.cols, 0.0);
    for (int i = 0; i < f.rows; i++) {
        for (int j = 0; j < f.rank; j++) {
            const double b = f.B[(size_t) i * f.rank + j];
            for (int c = 0; c < f.cols; c++) {
                p[(size_t) i * f.cols + c] += b * f.A[(size_t) j * f.cols + c];
            }
        }
    }
    return p;
}

// Threads of this process now (Linux): shows whether a call woke OpenBLAS's OpenMP team.
int process_threads() {
    int n = 0;
    for (const auto & entry : std::filesystem::directory_iterator("/proc/self/task")) {
        n += entry.is_directory() ? 1 : 0;
    }
    return n;
}

// ||got - want||_F / ||want||_F
double frobenius_error(const std::vector<double> & got, const std::vector<double> & want) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < want.size(); i++) {
        diff += (got[i] - want[i]) * (got[i] - want[i]);
        norm += want[i] * want[i];
    }
    return std::sqrt(diff / norm);
}

void run_shape(int rows, int cols, int rank, int reps) {
    const std::vector<float> delta = lora_like_delta(rows, cols, 7);
    LowRank                  f;
    Timing                   td, ts;
    const int                threads_before = process_threads();
    for (int rep = 0; rep < reps; rep++) {
        time_best(td, [&] { f = factorize_delta(delta.data(), rows, cols, rank); });
    }
    const int threads_after = process_threads();
    FloatSvd  fs;
    for (int rep = 0; rep < reps; rep++) {
        time_best(ts, [&] { fs = sgesdd_factorize(delta, rows, cols, rank); });
    }
    double s_err = 0.0, kept = 0.0, total = 0.0;
    for (int j = 0; j < (int) fs.s.size(); j++) {
        if (j < rank) {
            s_err = std::max(s_err, std::fabs(fs.s[j] - f.singular_values[j]) / f.singular_values[j]);
            kept += fs.s[j] * fs.s[j];
        }
        total += fs.s[j] * fs.s[j];
    }
    std::printf("[%5d, %5d] rank %d: factorize_delta (dgesdd) %.2f s wall, %.2f s cpu; sgesdd %.2f s wall, %.2f s "
                "cpu; retained %.8f (sgesdd %.8f); sgesdd's kept singular values rel err %.2g, its B*A vs "
                "dgesdd's %.2g; process threads %d -> %d\n",
                rows, cols, rank, td.wall, td.cpu, ts.wall, ts.cpu, f.retained, kept / total, s_err,
                frobenius_error(fs.product, product(f)), threads_before, threads_after);
}

}  // namespace

int main(int argc, char ** argv) {
    CLI::App app{"factorize_delta (dgesdd) vs sgesdd, single-threaded"};
    int      rank = 16, reps = 2;
    app.add_option("--rank", rank, "LoRA rank");
    app.add_option("--reps", reps, "timed repetitions (best is shown)");
    CLI11_PARSE(app, argc, argv);
    run_shape(2048, 2048, rank, reps);  // q/o of a 2048-wide model
    run_shape(5632, 2048, rank, reps);  // gate/up of TinyLlama-1.1B (F = 5632)
    run_shape(2048, 5632, rank, reps);  // down
    return 0;
}
