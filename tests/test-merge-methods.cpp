// The merge methods one tensor at a time (merge/methods.h) and the whole-model top-k
// (merge/model_topk.h):
// - against the float64 torch oracle tools/reference/merge_methods_ref.py, written from the
//   definitions, on random tensors (1-D, square and not, 1-4 models, negative weights, zero
//   deltas) for every method and paft variant. Deltas are multiples of 1/8, so magnitudes tie
//   often and sums cancel exactly: ranks, tie rules and sign elections are compared exactly, the
//   values to float32 rounding. Random methods: the oracle is fed the masks paft draws
//   (random_keep_mask); the draws are checked by their statistics separately;
// - hand-computed small cases for each method;
// - parameter resolution (defaults, kinds, ranges, refusals);
// - determinism: the same bits for 1 and 4 threads, fresh or reused scratch.
#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "merge/methods.h"
#include "merge/model_topk.h"
#include "merge/sparsify.h"

#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

using namespace paft;
namespace fs = std::filesystem;

namespace {

const std::string kOracle = std::string(PAFT_SOURCE_DIR) + "/tools/reference/merge_methods_ref.py";

ParamScalar num(double x) {
    ParamScalar v;
    v.number = x;
    return v;
}
ParamScalar flag(bool b) {
    ParamScalar v;
    v.kind    = ParamScalar::Kind::boolean;
    v.boolean = b;
    return v;
}
ParamScalar word(const std::string & s) {
    ParamScalar v;
    v.kind = ParamScalar::Kind::text;
    v.text = s;
    return v;
}

using Params = std::map<std::string, ParamScalar>;

// The parameters as a user sets them: global, and per model.
struct Setting {
    Params              global;
    std::vector<Params> per_model;
};

ParamLookup lookup_of(const Setting & s) {
    return [s](const std::string & name, int model) -> std::optional<ParamScalar> {
        const Params & p  = model < 0 ? s.global : s.per_model.at(model);
        auto           it = p.find(name);
        return it == p.end() ? std::nullopt : std::optional<ParamScalar>(it->second);
    };
}

// One tensor's inputs: an empty delta is a null (zero) delta; models (where given) are the
// models' own tensors; no_base: linear without a base.
struct Data {
    size_t                          rows = 1, cols = 0;
    std::vector<float>              base;
    std::vector<std::vector<float>> deltas;
    std::vector<std::vector<float>> models;
    bool                            no_base = false;
};

TensorInput input_of(const Data & d, const std::string & name) {
    TensorInput in;
    in.name = name;
    in.rows = d.rows;
    in.cols = d.cols;
    in.n    = d.rows * d.cols;
    in.base = d.no_base ? nullptr : d.base.data();
    for (size_t i = 0; i < d.deltas.size(); i++) {
        in.deltas.push_back(d.deltas[i].empty() ? nullptr : d.deltas[i].data());
        if (!d.models.empty()) {
            in.models.push_back(d.models[i].empty() ? nullptr : d.models[i].data());
        }
    }
    return in;
}

const MergeMethodDef & method(const std::string & name) {
    const MergeMethodDef * m = find_merge_method(name);
    if (!m) {
        throw std::runtime_error("no method " + name);
    }
    return *m;
}

TensorParams params_of(const std::string & name, const Setting & s, size_t models, uint64_t seed = 42) {
    TensorParams p = resolve_tensor_params(method(name), models, lookup_of(s), "t");
    p.seed         = seed;
    return p;
}

std::vector<float> run(const std::string & name, const Setting & s, const Data & d, const std::string & tensor = "t",
                       uint64_t seed = 42) {
    const TensorParams p = params_of(name, s, d.deltas.size(), seed);
    MergeScratch       scratch;
    std::vector<float> out(d.rows * d.cols);
    merge_tensor(method(name), input_of(d, tensor), p, scratch, out.data());
    return out;
}

// A setting with weights (and, where given, densities) per model.
Setting weights(std::vector<double> w, std::vector<double> density = {}, Params global = {}) {
    Setting s;
    s.global = std::move(global);
    for (size_t i = 0; i < w.size(); i++) {
        Params p = {{"weight", num(w[i])}};
        if (!density.empty()) {
            p["density"] = num(density[i]);
        }
        s.per_model.push_back(p);
    }
    return s;
}

Data data_1d(std::vector<float> base, std::vector<std::vector<float>> deltas) {
    Data d;
    d.rows   = 1;
    d.cols   = base.size();
    d.base   = std::move(base);
    d.deltas = std::move(deltas);
    return d;
}

void expect_floats(const std::vector<float> & got, const std::vector<double> & want, double tol = 1e-6) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < got.size(); j++) {
        EXPECT_NEAR(got[j], want[j], tol) << "entry " << j;
    }
}

bool oracle_available() {
    return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

nlohmann::json scalar_json(const ParamScalar & v) {
    switch (v.kind) {
        case ParamScalar::Kind::number: return v.number;
        case ParamScalar::Kind::boolean: return v.boolean;
        default: return v.text;
    }
}

nlohmann::json params_json(const Params & p) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto & [k, v] : p) {
        j[k] = scalar_json(v);
    }
    return j;
}

// ---- Random cases ---------------------------------------------------------------------------

// Multiples of 1/8 in [-12/8, 12/8] (zeros and equal magnitudes are common).
std::vector<float> quantised(Random & rng, size_t n) {
    std::vector<float> x(n);
    for (float & v : x) {
        v = (float) ((int) (rng.next_u64() % 25) - 12) / 8.0f;
    }
    return x;
}

std::vector<float> normal(Random & rng, size_t n) {
    std::vector<float> x(n);
    for (float & v : x) {
        v = rng.normal();
    }
    return x;
}

struct OracleCase {
    std::string                          name, method;
    Setting                              setting;
    std::vector<Data>                    tensors;  // one, or several for a whole-model case
    bool                                 whole_model = false;
    std::vector<std::vector<float>>      outputs;  // paft's, per tensor
};

// The variants of each method: global settings the oracle must reproduce.
std::vector<std::pair<std::string, Params>> variants() {
    return {
        {"linear", {}},
        {"linear", {{"normalize", flag(false)}}},
        {"task_arithmetic", {}},
        {"task_arithmetic", {{"lambda", num(0.5)}, {"normalize", flag(true)}}},
        {"ties", {}},
        {"ties", {{"normalize", flag(false)}, {"lambda", num(1.5)}}},
        {"ties", {{"consensus_method", word("count")}}},
        {"ties", {{"normalize_divisor", word("count")}}},
        {"ties", {{"topk_scope", word("row")}}},
        {"ties", {{"rescale", flag(true)}, {"int8_mask", flag(true)}}},
        {"ties", {{"rescale", word("density")}}},
        {"ties", {{"consensus_method", word("count")}, {"normalize_divisor", word("count")}, {"topk_scope", word("row")}}},
        {"dare_ties", {}},
        {"dare_ties", {{"rescale", word("density")}}},
        {"dare_ties", {{"rescale", word("none")}, {"normalize", flag(true)}}},
        {"dare_ties", {{"consensus_method", word("count")}, {"normalize_divisor", word("count")}, {"normalize", flag(true)}}},
        {"dare_linear", {}},
        {"dare_linear", {{"rescale", word("density")}, {"normalize", flag(true)}, {"lambda", num(0.75)}}},
        {"breadcrumbs", {}},
        {"breadcrumbs", {{"rescale", word("l1")}}},
        {"breadcrumbs", {{"topk_scope", word("row")}}},
        {"breadcrumbs_ties", {}},
        {"breadcrumbs_ties", {{"normalize", flag(true)}, {"rescale", word("density")}}},
        {"breadcrumbs_ties", {{"consensus_method", word("count")}, {"normalize_divisor", word("count")}, {"normalize", flag(true)}}},
        {"della", {}},
        {"della", {{"rescale", word("density")}}},
        {"della", {{"rescale", flag(false)}, {"normalize", flag(false)}, {"consensus_method", word("count")}}},
        {"della_linear", {}},
        {"della_linear", {{"rescale", word("density")}, {"lambda", num(2.0)}}},
        {"slerp", {{"t", num(0.3)}}},
        {"slerp", {{"t", num(0.0)}}},
        {"slerp", {{"t", num(1.0)}}},
        {"slerp", {{"t", num(0.75)}}},
        {"model_stock", {}},
        {"model_stock", {{"filter_wise", flag(true)}}},
    };
}

// Per-model parameters for a method: weights (negative ones included), densities, gamma, epsilon.
std::vector<Params> random_model_params(const MergeMethodDef & m, size_t models, Random & rng) {
    const double        kWeights[]   = {1.0, 0.5, -0.75, 1.25, 2.0, 0.25};
    const double        kDensities[] = {0.3, 0.5, 0.7, 1.0};
    const double        kGammas[]    = {0.0, 0.05, 0.2, 0.4};  // 0.4 + density 0.7 > 1: fewer large ones dropped
    const double        kEpsilons[]  = {0.1, 0.2};
    std::vector<Params> out(models);
    for (size_t i = 0; i < models; i++) {
        if (find_param(m, "weight")) {
            out[i]["weight"] = num(kWeights[rng.next_u64() % 6]);
        }
        if (find_param(m, "density")) {
            out[i]["density"] = num(kDensities[rng.next_u64() % 4]);
        }
        if (find_param(m, "gamma") && rng.next_u64() % 2 == 0) {  // else the default 0.01
            out[i]["gamma"] = num(kGammas[rng.next_u64() % 4]);
        }
        if (find_param(m, "epsilon") && rng.next_u64() % 2 == 0) {  // else the default 0.15
            out[i]["epsilon"] = num(kEpsilons[rng.next_u64() % 2]);
        }
    }
    return out;
}

Data random_tensor(Random & rng, size_t rows, size_t cols, size_t models, bool zero_deltas) {
    Data d;
    d.rows = rows;
    d.cols = cols;
    d.base = normal(rng, rows * cols);
    for (size_t i = 0; i < models; i++) {
        // One model in five (never model 0) has a zero delta: it does not change this tensor.
        const bool zero = zero_deltas && i > 0 && rng.next_u64() % 5 == 0;
        d.deltas.push_back(zero ? std::vector<float>{} : quantised(rng, rows * cols));
    }
    return d;
}

std::vector<OracleCase> oracle_cases() {
    const std::pair<size_t, size_t> kShapes[] = {{1, 40}, {8, 16}, {6, 25}, {13, 7}};
    Random                          rng(7);
    std::vector<OracleCase>         cases;
    for (const auto & [name, global] : variants()) {
        const MergeMethodDef & m = method(name);
        for (const auto & [rows, cols] : kShapes) {
            const size_t models = m.max_models == 1 ? 1 : m.min_models + rng.next_u64() % (5 - m.min_models);
            OracleCase   c;
            c.name              = fmt::format("c{}", cases.size());
            c.method            = name;
            c.setting.global    = global;
            c.setting.per_model = random_model_params(m, models, rng);
            c.tensors.push_back(random_tensor(rng, rows, cols, models, name != "slerp"));
            cases.push_back(std::move(c));
        }
    }
    // linear on the models' own tensors, without a base; ties and model_stock on models given
    // as tensors (their deltas formed as model - base).
    for (const std::string name : {"linear", "ties", "model_stock"}) {
        OracleCase c;
        c.name              = fmt::format("c{}", cases.size());
        c.method            = name;
        c.setting.per_model = random_model_params(method(name), 3, rng);
        Data d              = random_tensor(rng, 5, 12, 3, false);
        for (size_t i = 0; i < 3; i++) {
            d.models.push_back(normal(rng, 60));
            d.deltas[i].clear();
        }
        d.no_base = name == "linear";
        c.tensors.push_back(std::move(d));
        cases.push_back(std::move(c));
    }
    return cases;
}

// Whole-model top-k cases: five tensors, three models (some tensors unchanged by some models).
std::vector<OracleCase> whole_model_cases() {
    const std::pair<size_t, size_t>                     kShapes[] = {{1, 40}, {8, 16}, {6, 25}, {13, 7}, {4, 9}};
    const std::vector<std::pair<std::string, Params>> kVariants = {
        {"ties", {}},
        {"ties", {{"consensus_method", word("count")}, {"rescale", word("l1")}}},
        {"breadcrumbs", {}},
        {"breadcrumbs_ties", {{"normalize", flag(true)}}},
    };
    Random                  rng(11);
    std::vector<OracleCase> cases;
    for (const auto & [name, global] : kVariants) {
        OracleCase c;
        c.name           = fmt::format("m{}", cases.size());
        c.method         = name;
        c.whole_model    = true;
        c.setting.global = global;
        c.setting.global["topk_scope"] = word("model");
        c.setting.per_model            = random_model_params(method(name), 3, rng);
        const double densities[]       = {0.3, 0.55, 1.0};
        for (size_t i = 0; i < 3; i++) {
            c.setting.per_model[i]["density"] = num(densities[i]);
            if (name != "ties") {
                c.setting.per_model[i]["gamma"] = num(i == 0 ? 0.05 : 0.0);
            }
        }
        for (const auto & [rows, cols] : kShapes) {
            c.tensors.push_back(random_tensor(rng, rows, cols, 3, true));
        }
        cases.push_back(std::move(c));
    }
    return cases;
}

// The cuts of a whole-model case, as the engine computes them.
std::vector<std::vector<ModelCut>> cuts_of(const OracleCase & c) {
    std::vector<size_t> numel;
    for (const Data & d : c.tensors) {
        numel.push_back(d.rows * d.cols);
    }
    std::vector<double> density, gamma;
    for (const Params & p : c.setting.per_model) {
        density.push_back(p.at("density").number);
        gamma.push_back(p.count("gamma") ? p.at("gamma").number : c.method == "ties" ? 0.0 : 0.01);
    }
    return model_topk_cuts(numel, density, gamma, [&](size_t t, size_t m, std::vector<float> &) -> const float * {
        const std::vector<float> & d = c.tensors[t].deltas[m];
        return d.empty() ? nullptr : d.data();
    });
}

// Runs paft on every case (storing outputs and, for random methods, masks), the oracle on all,
// and returns the largest error in float32 ulps of the expected value; fails on any entry
// beyond one ulp (plus 1e-12 of the tensor's scale for results near zero).
double compare_with_oracle(std::vector<OracleCase> & cases) {
    const fs::path                  dir = fresh_test_folder("paft-merge-methods");
    std::vector<std::vector<float>> storage;
    std::vector<TensorToWrite>      tensors;  // point into storage's vectors, whose buffers never move
    auto add = [&](const std::string & name, const Data & d, std::vector<float> values) {
        storage.push_back(std::move(values));
        tensors.push_back({name, {(int64_t) d.rows, (int64_t) d.cols}, storage.back().data(), DType::F32});
    };
    nlohmann::json spec = {{"inputs", (dir / "inputs.safetensors").string()},
                           {"out", (dir / "expected.safetensors").string()}};
    for (OracleCase & c : cases) {
        const MergeMethodDef & m = method(c.method);
        const size_t           models = c.setting.per_model.size();
        TensorParams           p      = params_of(c.method, c.setting, models, 5);
        std::vector<std::vector<ModelCut>> cuts;
        if (c.whole_model) {
            cuts = cuts_of(c);
        }
        nlohmann::json j = {{"name", c.name}, {"method", c.method}, {"models", models},
                            {"global", params_json(c.setting.global)}};
        for (const Params & pm : c.setting.per_model) {
            j["per_model"].push_back(params_json(pm));
        }
        for (size_t t = 0; t < c.tensors.size(); t++) {
            const Data &      d      = c.tensors[t];
            const std::string prefix = c.whole_model ? fmt::format("{}.{}", c.name, t) : c.name;
            if (c.whole_model) {
                p.cuts = cuts[t];
                j["shapes"].push_back({d.rows, d.cols});
            } else {
                j["shape"] = {d.rows, d.cols};
            }
            const TensorInput  in = input_of(d, prefix);
            MergeScratch       scratch;
            std::vector<float> out(in.n);
            merge_tensor(m, in, p, scratch, out.data());
            c.outputs.push_back(out);
            if (!d.no_base) {
                add(prefix + ".base", d, d.base);
            }
            for (size_t i = 0; i < models; i++) {
                if (!d.deltas[i].empty()) {
                    add(fmt::format("{}.delta.{}", prefix, i), d, d.deltas[i]);
                }
                if (!d.models.empty() && !d.models[i].empty()) {
                    add(fmt::format("{}.model.{}", prefix, i), d, d.models[i]);
                }
                std::vector<uint8_t> keep;
                random_keep_mask(m, in, p, i, keep);
                if (!keep.empty()) {
                    add(fmt::format("{}.mask.{}", prefix, i), d, std::vector<float>(keep.begin(), keep.end()));
                }
            }
        }
        spec["cases"].push_back(j);
    }
    write_safetensors((dir / "inputs.safetensors").string(), tensors);
    write_file_atomic((dir / "spec.json").string(), spec.dump(1));
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --spec '{}' 2>'{}'", kOracle,
                                        (dir / "spec.json").string(), (dir / "stderr").string());
    if (std::system(cmd.c_str()) != 0) {
        ADD_FAILURE() << "the oracle failed: " << cmd << "\n" << read_file((dir / "stderr").string());
        return NAN;
    }
    const SafetensorsFile expected((dir / "expected.safetensors").string());
    double                worst_ulps = 0.0;
    for (const OracleCase & c : cases) {
        for (size_t t = 0; t < c.tensors.size(); t++) {
            const std::string  name = c.whole_model ? fmt::format("{}.{}", c.name, t) : c.name;
            const TensorInfo * info = expected.find(name);
            if (!info || info->dtype != DType::F64) {
                ADD_FAILURE() << "no F64 output " << name;
                continue;
            }
            std::vector<double> want(info->numel());
            std::memcpy(want.data(), expected.bytes(*info).data(), want.size() * sizeof(double));
            const std::vector<float> & got   = c.outputs[t];
            double                     scale = 0.0;
            for (double w : want) {
                scale = std::max(scale, std::fabs(w));
            }
            for (size_t j = 0; j < want.size(); j++) {
                const double ulp  = std::ldexp(1.0, std::ilogb(std::max(std::fabs(want[j]), 1e-30)) - 23);
                const double diff = std::fabs((double) got[j] - want[j]);
                worst_ulps        = nan_max(worst_ulps, diff / ulp);
                if (!(diff <= ulp + 1e-12 * scale)) {
                    ADD_FAILURE() << c.method << " " << c.name << " tensor " << t << " entry " << j << ": " << got[j]
                                  << " vs " << want[j] << " (global " << params_json(c.setting.global).dump() << ")";
                    break;  // one report per tensor
                }
            }
        }
    }
    return worst_ulps;
}

}  // namespace

// ---- Against the oracle ---------------------------------------------------------------------

TEST(MergeMethods, EveryMethodAndVariantMatchesTheOracle) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    std::vector<OracleCase> cases = oracle_cases();
    const double            ulps  = compare_with_oracle(cases);
    std::printf("%zu cases: largest difference %.3g float32 ulps\n", cases.size(), ulps);
}

TEST(MergeMethods, WholeModelTopkMatchesTheOracle) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    std::vector<OracleCase> cases = whole_model_cases();
    const double            ulps  = compare_with_oracle(cases);
    std::printf("%zu whole-model cases: largest difference %.3g float32 ulps\n", cases.size(), ulps);
}

// ---- Hand-computed cases --------------------------------------------------------------------

TEST(MergeMethods, LinearAndTaskArithmeticByHand) {
    const Data d = data_1d({1, 2}, {{0.5f, -1}, {1, 1}});  // models [1.5, 1] and [2, 3]
    // linear: (2 [1.5, 1] + [2, 3]) / 3, or without normalize the sum.
    expect_floats(run("linear", weights({2, 1}), d), {5.0 / 3, 5.0 / 3});
    expect_floats(run("linear", weights({2, 1}, {}, {{"normalize", flag(false)}}), d), {5, 5});
    // linear from the models' tensors, without a base.
    Data models   = d;
    models.models = {{1.5f, 1}, {2, 3}};
    models.deltas = {{}, {}};
    models.no_base = true;
    expect_floats(run("linear", weights({2, 1}), models), {5.0 / 3, 5.0 / 3});
    // task_arithmetic: base + lambda (2 d1 + d2) = base + 0.5 [2, -1]; normalize divides by 3.
    expect_floats(run("task_arithmetic", weights({2, 1}, {}, {{"lambda", num(0.5)}}), d), {2, 1.5});
    expect_floats(run("task_arithmetic", weights({2, 1}, {}, {{"normalize", flag(true)}}), d),
                  {1 + 2.0 / 3, 2 - 1.0 / 3});
    // Weights summing to 0: task_arithmetic's normalize falls back to dividing by 1 (mergekit's guard).
    expect_floats(run("task_arithmetic", weights({1, -1}, {}, {{"normalize", flag(true)}}), d), {0.5, -0.0});
}

// d1 = [1, -2, 3 | -0.5, 0, 4], d2 = [-1.5, 2, 2 | 0.5, 2.5, -1] as [2, 3], density 0.5.
// Per tensor, k = int(0.5 * 6) = 3: d1 keeps 4, 3, -2; d2 keeps 2.5 and both 2s (of |d| 2, 2 the
// lower indices come first). Entry 1: -2 + 2 = 0 elects +, keeps d2 -> 2; entry 2: (3 + 2) / 2.
// Per row, k = int(0.5 * 3) = 1: d1 keeps 3 and 4; d2 keeps the first 2 (entry 1) and 2.5.
TEST(MergeMethods, TiesTrimScopesByHand) {
    Data d   = data_1d(std::vector<float>(6, 0.0f), {{1, -2, 3, -0.5f, 0, 4}, {-1.5f, 2, 2, 0.5f, 2.5f, -1}});
    d.rows   = 2;
    d.cols   = 3;
    const Setting tensor = weights({1, 1}, {0.5, 0.5});
    expect_floats(run("ties", tensor, d), {0, 2, 2.5, 0, 2.5, 4});
    Setting row                  = tensor;
    row.global["topk_scope"]     = word("row");
    expect_floats(run("ties", row, d), {0, 2, 3, 0, 2.5, 4});
    // rescale: the one model's d = [1, -3, 2, 0.5], density 0.5 keeps -3 and 2; density
    // rescale doubles them, l1 scales by 6.5 / 5 = 1.3 (one model: its weight cancels).
    const Data one = data_1d({0, 0, 0, 0}, {{1, -3, 2, 0.5f}});
    expect_floats(run("ties", weights({3}, {0.5}, {{"rescale", word("density")}}), one), {0, -6, 4, 0});
    expect_floats(run("ties", weights({3}, {0.5}, {{"rescale", flag(true)}}), one), {0, -3.9, 2.6, 0});
    expect_floats(run("ties", weights({3}, {0.5}), one), {0, -3, 2, 0});
}

// d1 = [3, -1], d2 = [-1, 2], d3 = [-1, -4], density 1.
// Entry 0: sum 1 elects + (keeps d1: 3); signs +, -, - elect - with count (keeps d2, d3: -2 / 2).
// Entry 1: sum -3 and signs -, +, - both elect -: (-1 - 4) / 2.
// Weights 2, 1, 1: entry 0's sum 6 - 1 - 1 elects +: 2 * 3 over weights 2 or over count 1;
// entry 1: -2 + 2 - 4 elects -: (-2 - 4) over weights 3 or count 2.
TEST(MergeMethods, ConsensusAndDivisorVariantsByHand) {
    const Data d = data_1d({0, 0}, {{3, -1}, {-1, 2}, {-1, -4}});
    expect_floats(run("ties", weights({1, 1, 1}), d), {3, -2.5});
    expect_floats(run("ties", weights({1, 1, 1}, {}, {{"consensus_method", word("count")}}), d), {-1, -2.5});
    expect_floats(run("ties", weights({2, 1, 1}), d), {3, -2});
    expect_floats(run("ties", weights({2, 1, 1}, {}, {{"normalize_divisor", word("count")}}), d), {6, -3});
    // A model with no delta: no vote, no weight in the divisor.
    const Data two = data_1d({0, 0}, {{3, -1}, {}});
    expect_floats(run("ties", weights({1, 5}), two), {3, -1});
}

TEST(MergeMethods, DareByHand) {
    // Density 1 draws nothing: dare_ties is the election alone (no division by default),
    // dare_linear the plain sum.
    const Data d = data_1d({0, 0, 0}, {{1, -2, 3}, {-3, 1, 1}});
    expect_floats(run("dare_ties", weights({1, 1}, {1, 1}), d), {-3, -2, 4});
    expect_floats(run("dare_linear", weights({1, 1}, {1, 1}), d), {-2, -1, 4});
    // Density 0.5, rescale density: each survivor (by the drawn mask) doubled, weight 0.5.
    const Data   one = data_1d(std::vector<float>(64, 1.0f), {std::vector<float>(64, 0.25f)});
    const auto   out = run("dare_linear", weights({0.5}, {0.5}, {{"rescale", word("density")}}), one, "w", 9);
    const uint64_t stream = dare_stream(9, "w", 0);
    size_t         kept   = 0;
    for (size_t j = 0; j < 64; j++) {
        const bool keep = dare_keep(stream, j, 0.5);
        kept += keep;
        EXPECT_EQ(out[j], keep ? 1.25f : 1.0f) << j;
    }
    EXPECT_GT(kept, 10u);
    EXPECT_LT(kept, 54u);
}

// Magnitudes 1..10 at indices 0..9 (alternating signs).
TEST(MergeMethods, BreadcrumbsByHand) {
    const Data d = data_1d(std::vector<float>(10, 0.0f), {{1, -2, 3, -4, 5, -6, 7, -8, 9, -10}});
    auto       crumbs = [&](double density, double gamma) {
        Setting s                    = weights({1}, {density});
        s.per_model[0]["gamma"]      = num(gamma);
        return run("breadcrumbs", s, d);
    };
    // density 0.5, gamma 0.1: drop the 1 largest, keep the next 5.
    expect_floats(crumbs(0.5, 0.1), {0, 0, 0, 0, 5, -6, 7, -8, 9, 0});
    // gamma 0 (and the default 0.01 here: int(0.1) = 0): keep the 5 largest. mergekit's slice
    // [n_bot:-0] would keep nothing.
    expect_floats(crumbs(0.5, 0.0), {0, 0, 0, 0, 0, -6, 7, -8, 9, -10});
    expect_floats(run("breadcrumbs", weights({1}, {0.5}), d), {0, 0, 0, 0, 0, -6, 7, -8, 9, -10});
    // density 0.8, gamma 0.3: 8 + 3 > 10, so only 2 large ones are dropped.
    expect_floats(crumbs(0.8, 0.3), {1, -2, 3, -4, 5, -6, 7, -8, 0, 0});
    // Ties: [2, -2, 2, 1], density 0.5, gamma 0.25: the first 2 ranks first and is dropped.
    Setting s               = weights({1}, {0.5});
    s.per_model[0]["gamma"] = num(0.25);
    expect_floats(run("breadcrumbs", s, data_1d({0, 0, 0, 0}, {{2, -2, 2, 1}})), {0, -2, 2, 0});
    // Two models, density 0.5, gamma 0.25 (n_top 1, n_keep 2): d1 [1, -2, 3, -4] -> [0, -2, 3, 0];
    // d2 [-3, 1, 1, 2] -> [0, 1, 0, 2] (of the two 1s, the first ranks higher).
    Setting two = weights({1, 1}, {0.5, 0.5});
    for (Params & p : two.per_model) {
        p["gamma"] = num(0.25);
    }
    const Data pair = data_1d({0, 0, 0, 0}, {{1, -2, 3, -4}, {-3, 1, 1, 2}});
    expect_floats(run("breadcrumbs", two, pair), {0, -1, 3, 2});
    expect_floats(run("breadcrumbs_ties", two, pair), {0, -2, 3, 2});
}

TEST(MergeMethods, DellaByHand) {
    // Row [0.5, -2, 1, 1], density 0.5, epsilon 0.2: ascending ranks 0, 3, 2, 1 (of the equal 1s
    // the first ranks higher), p = 0.3 + rank / 3 * 0.4.
    std::vector<double>   p;
    std::vector<uint64_t> order;
    const float           row[] = {0.5f, -2, 1, 1};
    della_probabilities(row, 1, 4, 0.5, 0.2, p, order);
    const double want[] = {0.3, 0.7, 0.3 + 0.4 * 2 / 3, 0.3 + 0.4 / 3};
    for (size_t j = 0; j < 4; j++) {
        EXPECT_NEAR(p[j], want[j], 1e-15) << j;
    }
    // Per row: [[1, 2], [4, 3]] ranks each row by itself; a one-entry row gets the density.
    const float two_rows[] = {1, 2, 4, 3};
    della_probabilities(two_rows, 2, 2, 0.4, 0.1, p, order);
    const double want_rows[] = {0.3, 0.5, 0.5, 0.3};
    for (size_t j = 0; j < 4; j++) {
        EXPECT_NEAR(p[j], want_rows[j], 1e-15) << j;
    }
    della_probabilities(two_rows, 4, 1, 0.4, 0.1, p, order);
    EXPECT_EQ(p, (std::vector<double>(4, 0.4)));
    // Density 1 draws nothing: della is ties' election with normalize, della_linear the sum.
    const Data d = data_1d({0, 0, 0}, {{1, -2, 3}, {-3, 1, 1}});
    expect_floats(run("della", weights({1, 1}, {1, 1}), d), {-3, -2, 2});
    expect_floats(run("della_linear", weights({1, 1}, {1, 1}), d), {-2, -1, 4});
    // rescale density: each survivor divided by its own keep probability.
    Data one = data_1d(std::vector<float>(8, 0.0f), {{0.5f, -2, 1, 1, 3, -0.25f, 0.75f, 2.5f}});
    one.rows = 2;
    one.cols = 4;
    Setting s                 = weights({1}, {0.5}, {{"rescale", word("density")}});
    s.per_model[0]["epsilon"] = num(0.2);
    const TensorParams   params = params_of("della_linear", s, 1, 3);
    const TensorInput    in     = input_of(one, "w");
    std::vector<uint8_t> keep;
    random_keep_mask(method("della_linear"), in, params, 0, keep);
    della_probabilities(one.deltas[0].data(), 2, 4, 0.5, 0.2, p, order);
    const std::vector<float> out = run("della_linear", s, one, "w", 3);
    for (size_t j = 0; j < 8; j++) {
        EXPECT_EQ(keep[j], dare_keep(dare_stream(3, "w", 0), j, p[j]) ? 1 : 0);
        EXPECT_NEAR(out[j], keep[j] ? one.deltas[0][j] / p[j] : 0.0, 1e-6) << j;
    }
}

TEST(MergeMethods, SlerpByHand) {
    auto slerp = [](std::vector<float> base, std::vector<float> model, double t) {
        std::vector<float> delta(base.size());
        for (size_t j = 0; j < base.size(); j++) {
            delta[j] = model[j] - base[j];
        }
        return run("slerp", Setting{{{"t", num(t)}}, {{}}}, data_1d(base, {delta}));
    };
    // Orthogonal [2, 0] and [0, 3]: theta = pi / 2, coefficients sin((1 - t) pi / 2), sin(t pi / 2)
    // on the unnormalised vectors.
    expect_floats(slerp({2, 0}, {0, 3}, 0.5), {2 * std::sqrt(0.5), 3 * std::sqrt(0.5)});
    expect_floats(slerp({2, 0}, {0, 3}, 0.25), {2 * std::sin(3 * M_PI / 8), 3 * std::sin(M_PI / 8)});
    expect_floats(slerp({2, 0}, {0, 3}, 0.0), {2, 0});
    expect_floats(slerp({2, 0}, {0, 3}, 1.0), {0, 3});
    // 60 degrees: [1, 0] and [1, sqrt 3] (norm 2), t = 0.5: sin(pi / 6) / sin(pi / 3) each.
    const double c = std::sin(M_PI / 6) / std::sin(M_PI / 3);
    expect_floats(slerp({1, 0}, {1, (float) std::sqrt(3.0)}, 0.5), {2 * c, c * (float) std::sqrt(3.0)});
    // Colinear (|cos| > 0.9995): lerp, also when antiparallel.
    expect_floats(slerp({1, 2}, {2, 4}, 0.25), {1.25, 2.5});
    expect_floats(slerp({1, 2}, {-1, -2}, 0.25), {0.5, 1.0});
    // At the threshold: [1, 0] and [1, 0.02] have cos 0.9998 (lerp); [1, 0.04] cos 0.9992 (slerp, t
    // 0.5: both coefficients sin(theta / 2) / sin(theta), 0.49995 instead of lerp's 0.5).
    expect_floats(slerp({1, 0}, {1, 0.02f}, 0.5), {1, 0.01});
    const double theta = std::acos(1 / std::sqrt(1 + 0.04 * 0.04)), k = std::sin(theta / 2) / std::sin(theta);
    expect_floats(slerp({1, 0}, {1, 0.04f}, 0.5), {2 * k, 0.04 * k}, 1e-7);
    // A zero base is not normalised: cos = 0, so the model's coefficient is sin(t pi / 2).
    expect_floats(slerp({0, 0}, {1, 1}, 0.5), {std::sqrt(0.5), std::sqrt(0.5)});
}

TEST(MergeMethods, ModelStockByHand) {
    const std::vector<float> base = {1, 1};
    const Setting            none{{}, {{}, {}}};
    // Orthogonal task vectors: cos 0, t 0: the base.
    expect_floats(run("model_stock", none, data_1d(base, {{1, 0}, {0, 1}})), {1, 1});
    // cos = 1 / sqrt 2, t = 2 cos / (1 + cos): base + t * mean(d) = base + t [1, 0.5].
    const double c = std::sqrt(0.5), t = 2 * c / (1 + c);
    expect_floats(run("model_stock", none, data_1d(base, {{1, 1}, {1, 0}})), {1 + t, 1 + 0.5 * t});
    // Three: cosines 0, 1/sqrt 2, 1/sqrt 2 -> mean sqrt 2 / 3, t = 3 cos / (1 + 2 cos).
    const double c3 = std::sqrt(2.0) / 3, t3 = 3 * c3 / (1 + 2 * c3);
    expect_floats(run("model_stock", Setting{{}, {{}, {}, {}}}, data_1d(base, {{1, 0}, {0, 1}, {1, 1}})),
                  {1 + t3 * 2 / 3, 1 + t3 * 2 / 3});
    // filter_wise: row 0 orthogonal (t 0), row 1 identical (cos 1, t 1: the models' mean).
    Data rows = data_1d({1, 1, 1, 1}, {{1, 0, 2, 2}, {0, 1, 2, 2}});
    rows.rows = 2;
    rows.cols = 2;
    expect_floats(run("model_stock", Setting{{{"filter_wise", flag(true)}}, {{}, {}}}, rows), {1, 1, 3, 3});
    // Without filter_wise the same tensor has one cos = 8 / (3 * 3) (norms 3 and 3).
    const double cw = 8.0 / 9, tw = 2 * cw / (1 + cw);
    expect_floats(run("model_stock", none, rows), {1 + tw * 0.5, 1 + tw * 0.5, 1 + 2 * tw, 1 + 2 * tw});
    // Antiparallel pair: 1 + (N - 1) cos = 0, t undefined (mergekit divides by zero).
    expect_input_error([&] { run("model_stock", none, data_1d(base, {{1, 0}, {-2, 0}})); }, {"model_stock", "'t'"});
}

// Two tensors [3, -1, 2] and [2, -3, 0.5], density 0.5: k = int(0.5 * 6) = 3 over the model:
// 3, -3, then of the two 2s the one of tensor 0. A zero delta counts its zeros.
TEST(MergeMethods, WholeModelTopkByHand) {
    const std::vector<std::vector<float>> t = {{3, -1, 2}, {2, -3, 0.5f}};
    auto source = [&](size_t tensor, size_t, std::vector<float> &) -> const float * { return t[tensor].data(); };
    std::vector<std::vector<ModelCut>> cuts = model_topk_cuts({3, 3}, {0.5}, {0.0}, source);
    EXPECT_EQ(cuts[0][0].threshold, 2.0f);
    EXPECT_EQ(cuts[0][0].equal_kept, 1u);
    EXPECT_EQ(cuts[1][0].equal_kept, 0u);
    for (size_t k = 0; k < 2; k++) {
        std::vector<float> d = t[k];
        apply_cuts(d.data(), 3, {cuts[k][0].threshold, cuts[k][0].equal_kept},
                   {cuts[k][0].drop_threshold, cuts[k][0].drop_equal});
        EXPECT_EQ(d, k == 0 ? (std::vector<float>{3, 0, 2}) : (std::vector<float>{0, -3, 0}));
    }
    // Breadcrumbs over the model, gamma 0.34: int(0.34 * 6) = 2 largest dropped (3, -3), then 3 kept.
    cuts = model_topk_cuts({3, 3}, {0.5}, {0.34}, source);
    for (size_t k = 0; k < 2; k++) {
        std::vector<float> d = t[k];
        apply_cuts(d.data(), 3, {cuts[k][0].threshold, cuts[k][0].equal_kept},
                   {cuts[k][0].drop_threshold, cuts[k][0].drop_equal});
        EXPECT_EQ(d, k == 0 ? (std::vector<float>{0, -1, 2}) : (std::vector<float>{2, 0, 0}));
    }
    // A zero delta (tensor 0, four zeros) and [1, 2]: k = 3 keeps 2, 1 and one zero.
    auto with_zero = [&](size_t tensor, size_t, std::vector<float> & buf) -> const float * {
        buf = {1, 2};
        return tensor == 0 ? nullptr : buf.data();
    };
    cuts = model_topk_cuts({4, 2}, {0.5}, {0.0}, with_zero);
    EXPECT_EQ(cuts[0][0].threshold, 0.0f);
    EXPECT_EQ(cuts[0][0].equal_kept, 1u);
    EXPECT_EQ(cuts[1][0].equal_kept, 0u);
    // Density 1: everything, without reading.
    cuts = model_topk_cuts({4, 2}, {1.0}, {0.0}, [](size_t, size_t, std::vector<float> &) -> const float * {
        throw std::runtime_error("read");
    });
    EXPECT_EQ(cuts[1][0].threshold, 0.0f);
    EXPECT_GE(cuts[1][0].equal_kept, 2u);
    expect_input_error([&] { model_topk_cuts({3, 3}, {0.1}, {0.0}, source); }, {"density (model 0)", "6 entries"});
}

// ---- The random draws -----------------------------------------------------------------------

TEST(MergeMethods, DareDrawStatistics) {
    const size_t n = 200000;
    const double p = 0.3;
    // Keep rate ~ density.
    const uint64_t ref  = dare_stream(42, "w", 0);
    size_t         kept = 0;
    for (size_t j = 0; j < n; j++) {
        kept += dare_keep(ref, j, p);
    }
    EXPECT_LT(std::fabs((double) kept - n * p), 5 * std::sqrt(n * p * (1 - p))) << kept;
    // Independent across models, tensors and seeds: overlap ~ p^2.
    for (uint64_t other : {dare_stream(42, "w", 1), dare_stream(42, "v", 0), dare_stream(43, "w", 0)}) {
        size_t both = 0;
        for (size_t j = 0; j < n; j++) {
            both += dare_keep(ref, j, p) && dare_keep(other, j, p);
        }
        EXPECT_NEAR((double) both / n, p * p, 5 * std::sqrt(p * p * (1 - p * p) / n));
    }
}

// E[result] = base + w d with rescale density, per entry: over S seeds the mean of each entry is
// within 6 standard errors of it, and the z-scores' mean square is ~1 (the variance is right).
void expect_unbiased(const std::string & name, const Setting & s, const Data & d, double w,
                     const std::vector<double> & keep_probability) {
    const size_t        S = 400, n = d.rows * d.cols;
    std::vector<double> mean(n, 0.0);
    for (uint64_t seed = 0; seed < S; seed++) {
        const std::vector<float> out = run(name, s, d, "w", seed);
        for (size_t j = 0; j < n; j++) {
            mean[j] += ((double) out[j] - d.base[j]) / S;
        }
    }
    double z2 = 0.0;
    for (size_t j = 0; j < n; j++) {
        const double want = w * d.deltas[0][j], q = keep_probability[j];
        const double sd   = std::fabs(want) * std::sqrt((1 - q) / q / S);
        const double z    = (mean[j] - want) / sd;
        EXPECT_LT(std::fabs(z), 6.0) << name << " entry " << j;
        z2 += z * z / n;
    }
    EXPECT_GT(z2, 0.7) << name;
    EXPECT_LT(z2, 1.3) << name;
}

TEST(MergeMethods, RescaleDensityPreservesTheExpectation) {
    Random rng(3);
    Data   d = data_1d(normal(rng, 300), {quantised(rng, 300)});
    for (float & x : d.deltas[0]) {
        x = x == 0.0f ? 0.5f : x;  // no zero entries: each one is tested
    }
    d.rows = 20;
    d.cols = 15;
    expect_unbiased("dare_linear", weights({1.5}, {0.4}, {{"rescale", word("density")}}), d, 1.5,
                    std::vector<double>(300, 0.4));
    Setting della                 = weights({1.5}, {0.4}, {{"rescale", word("density")}});
    della.per_model[0]["epsilon"] = num(0.3);
    std::vector<double>   p;
    std::vector<uint64_t> order;
    della_probabilities(d.deltas[0].data(), 20, 15, 0.4, 0.3, p, order);
    expect_unbiased("della_linear", della, d, 1.5, p);
}

// DELLA keeps the entry of ascending rank r of a row with p = density - eps + 2 eps r / (cols - 1).
TEST(MergeMethods, DellaKeepRatePerRank) {
    const size_t rows = 400, cols = 9, S = 10;
    Random       rng(5);
    Data         d;
    d.rows = rows;
    d.cols = cols;
    d.base.assign(rows * cols, 0.0f);
    d.deltas.resize(1);
    std::vector<size_t> rank(rows * cols);  // ascending rank of each entry in its row
    for (size_t r = 0; r < rows; r++) {
        std::vector<size_t> perm(cols);
        for (size_t c = 0; c < cols; c++) {
            perm[c] = c;
        }
        for (size_t c = cols; c-- > 1;) {
            std::swap(perm[c], perm[rng.next_u64() % (c + 1)]);
        }
        for (size_t c = 0; c < cols; c++) {  // entry c has magnitude perm[c] + 1: rank perm[c]
            d.deltas[0].push_back((rng.next_u64() % 2 ? 1.0f : -1.0f) * (float) (perm[c] + 1));
            rank[r * cols + c] = perm[c];
        }
    }
    Setting             s = weights({1}, {0.5});
    std::vector<double> kept(cols, 0.0);
    for (uint64_t seed = 0; seed < S; seed++) {
        const TensorParams   params = params_of("della", s, 1, seed);
        std::vector<uint8_t> keep;
        random_keep_mask(method("della"), input_of(d, "w"), params, 0, keep);
        for (size_t j = 0; j < rows * cols; j++) {
            kept[rank[j]] += keep[j];
        }
    }
    for (size_t r = 0; r < cols; r++) {
        const double p    = 0.35 + 0.3 * (double) r / (cols - 1);
        const double rate = kept[r] / (rows * S);
        EXPECT_NEAR(rate, p, 5 * std::sqrt(p * (1 - p) / (rows * S))) << "rank " << r;
    }
    // The models draw independently: model 1's mask of the same delta differs from model 0's.
    Data two = d;
    two.deltas.push_back(d.deltas[0]);
    const TensorParams   params = params_of("della", weights({1, 1}, {0.5, 0.5}), 2, 1);
    std::vector<uint8_t> k0, k1;
    random_keep_mask(method("della"), input_of(two, "w"), params, 0, k0);
    random_keep_mask(method("della"), input_of(two, "w"), params, 1, k1);
    size_t both = 0, expected = 0;
    double want = 0.0;
    for (size_t j = 0; j < k0.size(); j++) {
        both += k0[j] && k1[j];
        expected += k0[j];
        const double p = 0.35 + 0.3 * (double) rank[j] / (cols - 1);
        want += p * p;
    }
    EXPECT_NEAR((double) both, want, 5 * std::sqrt(want)) << expected;
}

// ---- Determinism ----------------------------------------------------------------------------

TEST(MergeMethods, SameBitsForAnyThreadCountAndScratch) {
    Random            rng(9);
    std::vector<Data> tensors;
    for (size_t t = 0; t < 24; t++) {
        tensors.push_back(random_tensor(rng, 1 + t % 5, 7 + 3 * t, 3, true));
    }
    const std::vector<std::pair<std::string, Setting>> cases = {
        {"ties", weights({1, -0.5, 0.75}, {0.3, 0.6, 1.0})},
        {"dare_ties", weights({1, 0.5, 0.75}, {0.3, 0.6, 1.0})},
        {"della", weights({1, 0.5, 0.75}, {0.3, 0.6, 0.5})},
        {"breadcrumbs_ties", weights({1, 0.5, 0.75}, {0.3, 0.6, 0.9})},
        {"model_stock", Setting{{{"filter_wise", flag(true)}}, {{}, {}, {}}}},
    };
    const int saved = omp_get_max_threads();
    for (const auto & [name, s] : cases) {
        const TensorParams p = params_of(name, s, 3, 17);
        auto merge_all = [&](int threads, bool fresh) {
            std::vector<std::vector<float>> out(tensors.size());
            omp_set_num_threads(threads);
#pragma omp parallel
            {
                MergeScratch scratch;
#pragma omp for schedule(dynamic, 1)
                for (size_t t = 0; t < tensors.size(); t++) {
                    MergeScratch   own;
                    const auto     in = input_of(tensors[t], fmt::format("layer.{}", t));
                    out[t].resize(in.n);
                    merge_tensor(method(name), in, p, fresh ? own : scratch, out[t].data());
                }
            }
            return out;
        };
        const auto one = merge_all(1, false);
        EXPECT_EQ(one, merge_all(4, false)) << name;
        EXPECT_EQ(one, merge_all(4, true)) << name;
    }
    // The whole-model cuts.
    std::vector<size_t> numel;
    for (const Data & d : tensors) {
        numel.push_back(d.rows * d.cols);
    }
    auto source = [&](size_t t, size_t m, std::vector<float> &) -> const float * {
        return tensors[t].deltas[m].empty() ? nullptr : tensors[t].deltas[m].data();
    };
    auto cuts_with = [&](int threads) {
        omp_set_num_threads(threads);
        return model_topk_cuts(numel, {0.3, 0.7, 0.5}, {0.0, 0.1, 0.0}, source);
    };
    const auto a = cuts_with(1), b = cuts_with(4);
    for (size_t t = 0; t < numel.size(); t++) {
        for (size_t m = 0; m < 3; m++) {
            EXPECT_EQ(a[t][m].threshold, b[t][m].threshold);
            EXPECT_EQ(a[t][m].equal_kept, b[t][m].equal_kept);
            EXPECT_EQ(a[t][m].drop_threshold, b[t][m].drop_threshold);
            EXPECT_EQ(a[t][m].drop_equal, b[t][m].drop_equal);
        }
    }
    omp_set_num_threads(saved);
}

// ---- Parameters -----------------------------------------------------------------------------

TEST(MergeMethods, RegistryAndDefaults) {
    EXPECT_EQ(merge_method_list(), "linear, task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, "
                                   "breadcrumbs_ties, della, della_linear, slerp, model_stock");
    struct Want {
        const char * name;
        bool         normalize;
        Rescale      rescale;
        Consensus    consensus;
    };
    for (const Want & w : {Want{"task_arithmetic", false, Rescale::none, Consensus::none},
                           Want{"ties", true, Rescale::none, Consensus::sum},
                           Want{"dare_ties", false, Rescale::l1, Consensus::sum},
                           Want{"dare_linear", false, Rescale::l1, Consensus::none},
                           Want{"breadcrumbs", false, Rescale::none, Consensus::none},
                           Want{"breadcrumbs_ties", false, Rescale::none, Consensus::sum},
                           Want{"della", true, Rescale::l1, Consensus::sum},
                           Want{"della_linear", false, Rescale::l1, Consensus::none}}) {
        const TensorParams p = params_of(w.name, weights({1, 1}), 2);
        EXPECT_EQ(p.normalize, w.normalize) << w.name;
        EXPECT_EQ(p.rescale, w.rescale) << w.name;
        EXPECT_EQ(p.consensus, w.consensus) << w.name;
        EXPECT_EQ(p.lambda, 1.0) << w.name;
        EXPECT_EQ(p.divisor, Divisor::weights) << w.name;
        EXPECT_EQ(p.topk, TopkScope::tensor) << w.name;
        EXPECT_EQ(p.models[1].density, 1.0) << w.name;
        EXPECT_EQ(p.models[1].gamma, 0.01) << w.name;
        EXPECT_EQ(p.models[1].epsilon, 0.15) << w.name;
    }
    EXPECT_TRUE(params_of("linear", weights({1}), 1).normalize);
    EXPECT_FALSE(params_of("model_stock", Setting{{}, {{}, {}}}, 2).filter_wise);
    EXPECT_EQ(params_of("slerp", Setting{{{"t", num(0.25)}}, {{}}}, 1).t, 0.25);
    // rescale: mergekit's booleans and paft's words.
    for (const auto & [value, want] : std::vector<std::pair<ParamScalar, Rescale>>{{flag(true), Rescale::l1},
                                                                                  {flag(false), Rescale::none},
                                                                                  {word("l1"), Rescale::l1},
                                                                                  {word("density"), Rescale::density},
                                                                                  {word("none"), Rescale::none}}) {
        EXPECT_EQ(params_of("ties", weights({1}, {}, {{"rescale", value}}), 1).rescale, want);
    }
    EXPECT_EQ(find_param(method("breadcrumbs"), "gamma")->default_number, 0.01);
    EXPECT_EQ(find_param(method("della"), "epsilon")->default_number, 0.15);
    EXPECT_EQ(find_param(method("dare_ties"), "epsilon"), nullptr);
    EXPECT_EQ(param_list(method("linear")), "weight (per model); normalize (global)");
}

TEST(MergeMethods, ParameterErrorsNameTheParameter) {
    auto resolve = [](const std::string & name, const Setting & s, size_t models = 0) {
        resolve_tensor_params(method(name), models ? models : s.per_model.size(), lookup_of(s), "model.x.weight");
    };
    expect_input_error([&] { resolve("ties", weights({1, 1}, {0.5, 0.0})); },
                       {"density (model 1)", "model.x.weight", "(0, 1]"});
    expect_input_error([&] { resolve("ties", weights({1, 1}, {1.5, 0.5})); }, {"density (model 0)", "(0, 1]"});
    expect_input_error([&] { resolve("ties", weights({1, NAN})); }, {"weight (model 1)", "finite"});
    expect_input_error([&] { resolve("ties", weights({1}, {}, {{"lambda", num(INFINITY)}})); }, {"lambda"});
    Setting text_weight = weights({1});
    text_weight.per_model[0]["weight"] = word("heavy");
    expect_input_error([&] { resolve("linear", text_weight); }, {"weight (model 0)", "expected a number", "'heavy'"});
    expect_input_error([&] { resolve("ties", weights({1}, {}, {{"normalize", num(2)}})); },
                       {"normalize", "true or false"});
    expect_input_error([&] { resolve("ties", weights({1}, {}, {{"rescale", word("l2")}})); },
                       {"rescale", "'l2'", "l1", "density"});
    expect_input_error([&] { resolve("ties", weights({1}, {}, {{"topk_scope", word("layer")}})); },
                       {"topk_scope", "tensor, row, model"});
    expect_input_error([&] { resolve("dare_ties", weights({1}, {}, {{"consensus_method", word("max")}})); },
                       {"consensus_method", "sum, count"});
    Setting missing_weight = weights({1, 1});
    missing_weight.per_model[1].clear();
    expect_input_error([&] { resolve("linear", missing_weight); }, {"weight (model 1)", "linear", "not set"});
    expect_input_error([&] { resolve("task_arithmetic", missing_weight); }, {"weight (model 1)"});
    expect_input_error([&] { resolve("slerp", Setting{{}, {{}}}); }, {"t", "slerp", "not set"});
    expect_input_error([&] { resolve("slerp", Setting{{{"t", num(0.5)}}, {{}, {}}}); }, {"slerp", "exactly 1", "not 2"});
    expect_input_error([&] { resolve("model_stock", Setting{{}, {{}}}); }, {"model_stock", "at least 2"});
    expect_input_error([&] { resolve("ties", Setting{}, 0); }, {"ties", "at least 1"});
    expect_input_error([&] { resolve("linear", weights({1, -1})); }, {"weight", "sum to 0", "model.x.weight"});
    EXPECT_NO_THROW(resolve("linear", weights({1, -1}, {}, {{"normalize", flag(false)}})));
    // gamma in [0, 1], epsilon >= 0, and DELLA's density +/- epsilon inside (0, 1) where it drops.
    Setting gamma = weights({1}, {0.5});
    gamma.per_model[0]["gamma"] = num(-0.1);
    expect_input_error([&] { resolve("breadcrumbs", gamma); }, {"gamma (model 0)", "[0, 1]"});
    Setting eps = weights({1, 1}, {0.5, 0.9});
    expect_input_error([&] { resolve("della", eps); }, {"epsilon (model 1)", "0.9", "(0, 1)"});
    eps.per_model[1]["density"] = num(1.0);
    EXPECT_NO_THROW(resolve("della", eps));  // density 1 drops nothing: no check, as mergekit
    eps.per_model[0]["epsilon"] = num(-0.1);
    expect_input_error([&] { resolve("della", eps); }, {"epsilon (model 0)"});
    // A magnitude selection that keeps nothing: int(density * n) == 0.
    expect_input_error([&] { run("ties", weights({1}, {0.02}), data_1d(std::vector<float>(40, 0.0f), {std::vector<float>(40, 1.0f)}), "w"); },
                       {"density (model 0)", "tensor 'w'", "40 entries"});
    Data rows = data_1d(std::vector<float>(40, 0.0f), {std::vector<float>(40, 1.0f)});
    rows.rows = 8;
    rows.cols = 5;
    expect_input_error([&] { run("breadcrumbs", weights({1}, {0.1}, {{"topk_scope", word("row")}}), rows, "w"); },
                       {"density (model 0)", "a row of tensor 'w'", "5 entries"});
}

TEST(MergeMethods, ParameterNamesAreCheckedPerMethod) {
    expect_input_error([] { check_param_name(method("task_arithmetic"), "density", false, "merge.yml:7"); },
                       {"merge.yml:7", "task_arithmetic", "'density'", "weight (per model)", "lambda", "normalize"});
    expect_input_error([] { check_param_name(method("ties"), "gamma", true, "merge.yml:9"); },
                       {"merge.yml:9", "'gamma'", "density"});
    expect_input_error([] { check_param_name(method("slerp"), "weight", true, "m"); }, {"'weight'", "t (global)"});
    expect_input_error([] { check_param_name(method("linear"), "topk_scope", false, "m"); }, {"'topk_scope'"});
    expect_input_error([] { check_param_name(method("dare_linear"), "consensus_method", false, "m"); },
                       {"'consensus_method'"});
    expect_input_error([] { check_param_name(method("ties"), "normalize", true, "m"); }, {"'normalize'", "global"});
    EXPECT_NO_THROW(check_param_name(method("ties"), "weight", false, "m"));  // a per-model one set globally
    EXPECT_NO_THROW(check_param_name(method("ties"), "int8_mask", false, "m"));
    EXPECT_NO_THROW(check_param_name(method("breadcrumbs_ties"), "topk_scope", false, "m"));
    EXPECT_NO_THROW(check_param_name(method("model_stock"), "filter_wise", false, "m"));
}
