#include "merge/lora_extract.h"

#include "core/error.h"
#include "io/fs.h"

#include <fmt/format.h>
#include <lapacke.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cmath>

namespace paft {
namespace {

// D = U diag(s) Vt with k = min(rows, cols) singular triples, s descending.
struct ThinSvd {
    std::vector<double> s;   // [k]
    std::vector<double> U;   // [rows, k], orthonormal columns
    std::vector<double> Vt;  // [k, cols], orthonormal rows
};

// InputError for a bad size or rank, or a non-finite entry (LAPACK would fail or loop on it).
void check_delta(const float * delta, int rows, int cols, int rank, const std::string & name) {
    if (rows < 1 || cols < 1) {
        throw InputError(fmt::format("{}: cannot factorise a [{}, {}] delta", name, rows, cols));
    }
    if (rank < 1) {
        throw InputError(fmt::format("{}: LoRA rank must be positive, got {}", name, rank));
    }
    const size_t n = (size_t) rows * cols;
    for (size_t i = 0; i < n; i++) {
        if (!std::isfinite(delta[i])) {
            throw InputError(fmt::format("{}: the delta has a non-finite value ({}) at [{}, {}]", name, delta[i],
                                         i / cols, i % cols));
        }
    }
}

bool all_zero(const float * delta, size_t n) {
    return std::all_of(delta, delta + n, [](float v) { return v == 0.0f; });
}

// The thin SVD of delta [rows, cols] (row-major) in double by dgesdd. Row-major D is the
// column-major D^T [cols, rows]; LAPACK factorises that as D^T = U' S V'^T, so D = V' S U'^T:
// U' (column-major [cols, k]) is D's Vt as row-major [k, cols], and V'^T (column-major [k, rows])
// is D's U as row-major [rows, k]. No transposing copies are needed.
//
// OpenBLAS's OpenMP build runs a BLAS call on the calling thread alone when it is inside an
// active parallel region (omp_in_parallel) or when the calling thread's omp_get_max_threads() is
// 1; otherwise it wakes its OpenMP team, which is slow for dgesdd's many small BLAS calls and
// would oversubscribe the cores of a caller that runs its own workers. So this thread's
// nthreads-var is 1 during the call: that ICV belongs to the calling thread only, so other
// threads and OpenBLAS's own setting (openblas_get_num_threads) are left as they were.
ThinSvd thin_svd(const float * delta, int rows, int cols, const std::string & name) {
    const int k = std::min(rows, cols);
    ThinSvd   svd;
    svd.s.resize(k);
    svd.U.resize((size_t) rows * k);
    svd.Vt.resize((size_t) k * cols);
    std::vector<double> a(delta, delta + (size_t) rows * cols);  // overwritten by dgesdd
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', cols, rows, a.data(), cols, svd.s.data(),
                                           svd.Vt.data(), cols, svd.U.data(), k);
    omp_set_num_threads(threads);
    if (info > 0) {
        throw RuntimeFailure(fmt::format("{}: the SVD of the [{}, {}] delta did not converge (dgesdd info {})", name,
                                         rows, cols, info));
    }
    if (info < 0) {  // an argument error or LAPACKE's out of memory
        throw RuntimeFailure(
            fmt::format("{}: dgesdd failed on the [{}, {}] delta (LAPACKE error {})", name, rows, cols, info));
    }
    return svd;
}

// Flips singular pair j (row j of Vt, column j of U) so that the largest-magnitude entry of the
// Vt row (the first one, on ties) is positive; a pair and its negation are equally valid.
void fix_sign(ThinSvd & svd, int j, int rows, int cols) {
    const int     k   = (int) svd.s.size();
    double *      v   = svd.Vt.data() + (size_t) j * cols;
    const double * top = std::max_element(v, v + cols, [](double x, double y) { return std::fabs(x) < std::fabs(y); });
    if (*top >= 0) {
        return;
    }
    for (int c = 0; c < cols; c++) {
        v[c] = -v[c];
    }
    for (int i = 0; i < rows; i++) {
        svd.U[(size_t) i * k + j] = -svd.U[(size_t) i * k + j];
    }
}

// "model.layers.3.self_attn.q_proj", as the report names a module.
bool any_nonzero(const std::vector<float> & v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
}

// InputError unless m fits `shapes` (an adapter of the base model) and `rank`.
void check_module(const LowRankModule & m, const LoraAdapter & shapes, int rank) {
    if (m.target < 0 || m.target >= TARGET_COUNT || m.layer < 0 || m.layer >= shapes.layers()) {
        throw InputError(fmt::format("LoRA extraction: no module (layer {}, target {}) in a {}-layer model", m.layer,
                                     m.target, shapes.layers()));
    }
    const LowRank & f    = m.factors;
    const int       rows = shapes.out_features(m.target), cols = shapes.in_features(m.target);
    if (f.rows != rows || f.cols != cols) {
        throw InputError(fmt::format("LoRA extraction: {} is [{}, {}], the base model's [{}, {}]",
                                     lora_module_path(m.layer, m.target), f.rows, f.cols, rows, cols));
    }
    if (f.rank != rank || f.A.size() != (size_t) rank * cols || f.B.size() != (size_t) rows * rank) {
        throw InputError(fmt::format("LoRA extraction: {} has rank {} factors, the adapter rank {}",
                                     lora_module_path(m.layer, m.target), f.rank, rank));
    }
}

}  // namespace

LowRank factorize_delta(const float * delta, int rows, int cols, int rank, const std::string & name) {
    check_delta(delta, rows, cols, rank, name);
    const int k = std::min(rows, cols);
    LowRank   out;
    out.rows = rows;
    out.cols = cols;
    out.rank = rank;
    out.A.assign((size_t) rank * cols, 0.0f);
    out.B.assign((size_t) rows * rank, 0.0f);
    out.singular_values.assign(k, 0.0);
    if (all_zero(delta, (size_t) rows * cols)) {
        return out;  // retained = 1: nothing to lose
    }
    ThinSvd   svd  = thin_svd(delta, rows, cols, name);
    const int kept = std::min(rank, k);
    // Both sums run in the same order, so retained is exactly 1 when every triple is kept.
    double total = 0.0, kept_energy = 0.0;
    for (int j = 0; j < k; j++) {
        total += svd.s[j] * svd.s[j];
        kept_energy = j < kept ? total : kept_energy;
    }
    out.retained        = kept_energy / total;
    out.singular_values = svd.s;
    for (int j = 0; j < kept; j++) {
        fix_sign(svd, j, rows, cols);
        for (int c = 0; c < cols; c++) {
            out.A[(size_t) j * cols + c] = (float) svd.Vt[(size_t) j * cols + c];
        }
        for (int i = 0; i < rows; i++) {
            out.B[(size_t) i * rank + j] = (float) (svd.U[(size_t) i * k + j] * svd.s[j]);
        }
    }
    return out;
}

bool lora_module_of(const std::string & tensor_name, int * layer, int * target) {
    const std::string prefix = "model.layers.";
    if (!tensor_name.starts_with(prefix)) {
        return false;
    }
    size_t pos = prefix.size(), digits = 0;
    while (pos + digits < tensor_name.size() && std::isdigit((unsigned char) tensor_name[pos + digits])) {
        digits++;
    }
    if (digits == 0 || digits > 6) {
        return false;
    }
    const int l = std::stoi(tensor_name.substr(pos, digits));
    for (int t = 0; t < TARGET_COUNT; t++) {
        if (tensor_name == lora_module_path(l, t) + ".weight") {
            *layer  = l;
            *target = t;
            return true;
        }
    }
    return false;
}

LoraAdapter lora_adapter_from_factors(const ModelConfig & model, const std::vector<LowRankModule> & modules, int rank) {
    if (rank < 1) {
        throw InputError(fmt::format("LoRA extraction: rank must be positive, got {}", rank));
    }
    if (modules.empty()) {
        throw InputError("LoRA extraction: no q/k/v/o/gate/up/down_proj delta to write");
    }
    LoraConfig shapes_config;
    shapes_config.r = rank;
    const LoraAdapter shapes(model, shapes_config);  // no targets: only its feature sizes are used
    std::vector<bool>               seen((size_t) model.num_layers * TARGET_COUNT, false);
    std::array<bool, TARGET_COUNT> given{}, nonzero{};
    for (const LowRankModule & m : modules) {
        check_module(m, shapes, rank);
        const size_t slot = (size_t) m.layer * TARGET_COUNT + m.target;
        if (seen[slot]) {
            throw InputError(fmt::format("LoRA extraction: {} is given twice", lora_module_path(m.layer, m.target)));
        }
        seen[slot]        = true;
        given[m.target]   = true;
        nonzero[m.target] = nonzero[m.target] || any_nonzero(m.factors.B);
    }
    LoraConfig config;
    config.r       = rank;
    config.alpha   = (float) rank;  // scale alpha / r = 1
    config.targets = std::any_of(nonzero.begin(), nonzero.end(), [](bool b) { return b; }) ? nonzero : given;
    LoraAdapter adapter(model, config);  // A = B = 0
    for (const LowRankModule & m : modules) {
        if (adapter.has(m.layer, m.target)) {
            std::copy(m.factors.A.begin(), m.factors.A.end(), adapter.A(m.layer, m.target));
            std::copy(m.factors.B.begin(), m.factors.B.end(), adapter.B(m.layer, m.target));
        }
    }
    return adapter;
}

std::string retained_energy_report(const std::vector<LowRankModule> & modules, int rank) {
    std::vector<const LowRankModule *> sorted;
    for (const LowRankModule & m : modules) {
        sorted.push_back(&m);
    }
    std::sort(sorted.begin(), sorted.end(), [](const LowRankModule * a, const LowRankModule * b) {
        return a->layer != b->layer ? a->layer < b->layer : a->target < b->target;
    });
    nlohmann::json list = nlohmann::json::array();
    double         kept_energy = 0.0, total = 0.0, retained_min = 1.0;
    for (const LowRankModule * m : sorted) {
        const LowRank &     f = m->factors;
        std::vector<double> kept(f.singular_values.begin(),
                                 f.singular_values.begin() + std::min<size_t>(f.rank, f.singular_values.size()));
        double              energy = 0.0;
        for (double s : f.singular_values) {
            energy += s * s;
        }
        kept_energy += f.retained * energy;
        total += energy;
        retained_min = std::min(retained_min, f.retained);
        list.push_back({{"module", lora_module_path(m->layer, m->target)},
                        {"shape", {f.rows, f.cols}},
                        {"retained", f.retained},
                        {"singular_values", kept}});
    }
    nlohmann::json j = {{"rank", rank},
                        {"retained_min", retained_min},
                        {"retained_total", total > 0 ? kept_energy / total : 1.0},
                        {"modules", list}};
    return j.dump(2) + "\n";
}

void write_lora_adapter(const std::string & dir, const std::string & base_model_path, const ModelConfig & model,
                        const std::vector<LowRankModule> & modules, int rank) {
    const LoraAdapter adapter = lora_adapter_from_factors(model, modules, rank);
    adapter.save(dir, base_model_path);
    write_file_atomic(dir + "/lora_extraction.json", retained_energy_report(modules, rank));
}

}  // namespace paft
