#include "train/l1.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace paft {
namespace {

constexpr int kTileRows = 256;  // rows of delta W formed at once: a tile holds kTileRows x in floats

// One module's delta W = s B A [out, in], tile by tile: adds its statistics to `stats` and, if
// dA / dB are given, lambda * s * sign(delta) A^T to dB [out, r] and lambda * s * B^T sign(delta)
// to dA [r, in].
void module_penalty(Backend & backend, const float * A, const float * B, int r, int in, int out, float s,
                    double lambda, double threshold, float * dA, float * dB, std::vector<float> & tile,
                    DeltaStats & stats) {
    const float step = (float) (lambda * s);
    for (int i0 = 0; i0 < out; i0 += kTileRows) {
        const int     rows = std::min(kTileRows, out - i0);
        const float * Bi   = B + (size_t) i0 * r;  // [rows, r]
        tile.resize((size_t) rows * in);
        backend.gemm(false, false, rows, in, r, s, Bi, r, A, in, 0.0f, tile.data(), in);
        double l1 = 0;
        for (float & v : tile) {
            const float a = std::fabs(v);
            l1 += a;
            stats.zeros += a < threshold;
            v = (float) ((v > 0) - (v < 0));  // torch.sign: 0 at 0
        }
        stats.l1 += l1;
        stats.total += (long) rows * in;
        if (dA) {
            backend.gemm(false, true, rows, r, in, step, tile.data(), in, A, in, 1.0f, dB + (size_t) i0 * r, r);
            backend.gemm(true, false, r, in, rows, step, Bi, r, tile.data(), in, 1.0f, dA, in);
        }
    }
}

}  // namespace

// Modules are independent (each writes only its own dA, dB), so they run in parallel, one per
// thread at a time; their statistics are combined in module order, so the result does not depend
// on the thread count.
DeltaStats l1_penalty(Backend & backend, const LoraAdapter & adapter, double lambda, double threshold,
                      float * grads) {
    std::vector<std::pair<int, int>> modules;  // (layer, target)
    for (int l = 0; l < adapter.layers(); l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (adapter.has(l, t)) {
                modules.emplace_back(l, t);
            }
        }
    }
    const int               r = adapter.config().r;
    const float             s = adapter.config().scale();
    std::vector<DeltaStats> per_module(modules.size());
#pragma omp parallel
    {
        std::vector<float> tile;  // each thread's own
#pragma omp for schedule(dynamic)
        for (size_t m = 0; m < modules.size(); m++) {
            const auto [l, t] = modules[m];
            float * dA        = grads ? grads + adapter.offset_A(l, t) : nullptr;
            float * dB        = grads ? grads + adapter.offset_B(l, t) : nullptr;
            module_penalty(backend, adapter.A(l, t), adapter.B(l, t), r, adapter.in_features(t),
                           adapter.out_features(t), s, lambda, threshold, dA, dB, tile, per_module[m]);
        }
    }
    DeltaStats stats;
    for (const DeltaStats & m : per_module) {
        stats.l1 += m.l1;
        stats.zeros += m.zeros;
        stats.total += m.total;
    }
    return stats;
}

}  // namespace paft
