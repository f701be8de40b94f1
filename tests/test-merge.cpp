// Merging LoRA adapters (paft parallel's merge: run_merge over "base+adapter" inputs, as
// MergeOptions describe them) against the float64 torch oracle (tools/reference/merge_ref.py,
// written from the TIES / DARE / task arithmetic definitions and mergekit's rules) on a small
// random model and two LoRA adapters saved to disk; hand-computed per-tensor cases (TIES' trim,
// election and disjoint mean; DARE's drop and rescale); fold_lora_adapter against W + s B A
// in double loops; determinism across thread counts; validation errors.
//
// dare_ties draws random masks. The oracle cannot redraw paft's generator, so the test exports
// the masks (dare_keep, the function merge_tensor uses) and the oracle applies them: that checks
// everything after the draw exactly (rescale, election, mixing, lambda). The draw itself is
// checked by its statistics and its independence from threads, tensors and models.
#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "merge/config.h"
#include "merge/merge.h"
#include "merge/methods.h"
#include "merge/sparsify.h"
#include "model/lora.h"
#include "model/model.h"

#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>

using namespace paft;
namespace fs = std::filesystem;

namespace {

const std::string kOracle = std::string(PAFT_SOURCE_DIR) + "/tools/reference/merge_ref.py";

ModelConfig small_config() {
    ModelConfig c;
    c.hidden_size       = 32;
    c.intermediate_size = 48;
    c.num_layers        = 2;
    c.num_heads         = 4;
    c.num_kv_heads      = 2;
    c.head_dim          = 8;
    c.vocab_size        = 40;
    c.attention_bias    = true;  // bias tensors (q, k, v and, for Llama, o): never targeted, copied
    c.o_proj_bias       = true;
    return c;
}

// Adapter values: "dyadic" ones are k/8 with |k| <= 8, so with an integer scale every s * B * A
// is exact in f32 (and the same in the oracle's float64): magnitude ranks and sign elections then
// agree exactly, many magnitudes tie, and the tie rule itself is compared. "Continuous" ones are
// normal(0, 0.05), like trained factors.
enum class Values { dyadic, continuous };

LoraAdapter make_adapter(const ModelConfig & c, const std::string & targets, int r, float alpha, bool rslora,
                         uint64_t seed, Values values) {
    LoraAdapter adapter(c, test_lora_config(targets, r, alpha, rslora));
    Random      rng(seed);
    for (float & p : adapter.params()) {
        p = values == Values::dyadic ? (float) ((int) (rng.next_u64() % 17) - 8) / 8.0f : 0.05f * rng.normal();
    }
    return adapter;
}

// Adapter 1: s = 8/4 = 2 on q, v, o, gate, down. Adapter 2: rsLoRA, s = 6/sqrt(4) = 3 on q, k,
// up, down. Both touch q and down; each touches some modules alone; embeddings, norms, biases
// and the head are touched by neither.
std::vector<LoraAdapter> two_adapters(const ModelConfig & c, Values values) {
    std::vector<LoraAdapter> a;
    a.push_back(make_adapter(c, "q_proj,v_proj,o_proj,gate_proj,down_proj", 4, 8.0f, false, 21, values));
    a.push_back(make_adapter(c, "q_proj,k_proj,up_proj,down_proj", 4, 6.0f, true, 22, values));
    return a;
}

struct Case {
    std::string  name;
    MergeOptions options;
};

MergeOptions opts(const std::string & method, std::vector<double> weights, std::vector<double> densities = {},
                  int normalize = -1, double lambda = 1.0, const std::string & rescale = "", uint64_t seed = 42) {
    MergeOptions o;
    o.method    = method;
    o.weights   = std::move(weights);
    o.densities = std::move(densities);
    o.normalize = normalize;
    o.lambda    = lambda;
    o.rescale   = rescale;
    o.seed      = seed;
    return o;
}

std::vector<Case> weight_space_cases() {
    return {
        {"linear_default", opts("linear", {0.75, 0.25})},
        {"linear_raw", opts("linear", {1.0, 0.5}, {}, 0)},
        {"ta_default", opts("task_arithmetic", {1.0, 0.5}, {}, -1, 0.8)},
        {"ta_norm", opts("task_arithmetic", {0.5, 1.5}, {}, 1)},
    };
}

std::vector<Case> all_cases() {
    std::vector<Case> cases = weight_space_cases();
    std::vector<Case> more  = {
        {"ties_default", opts("ties", {1.0, 0.5}, {0.5, 0.3})},
        {"ties_raw", opts("ties", {0.75, -0.5}, {0.25, 0.7}, 0, 1.5)},
        {"ties_dense_l1", opts("ties", {1.0, 1.0}, {1.0, 0.4}, -1, 1.0, "l1")},
        {"ties_equal", opts("ties", {}, {0.6, 0.6}, -1, 0.7)},
        {"dare_default", opts("dare_ties", {1.0, 0.5}, {0.5, 0.7})},
        // Densities with exact reciprocals: with 1/0.3 and 1/0.9, two weighted deltas that cancel
        // exactly in real arithmetic (d2 = -3 d1 here) leave a rounding residue whose sign, and so
        // the elected sign, depends on the order of the products (in mergekit as well).
        {"dare_density_norm", opts("dare_ties", {0.6, 0.4}, {0.25, 0.5}, 1, 0.5, "density", 7)},
        {"dare_none", opts("dare_ties", {}, {0.5, 0.5}, -1, 1.0, "none", 9)},
    };
    cases.insert(cases.end(), more.begin(), more.end());
    return cases;
}

// The keep masks merge_tensor draws for a dare_ties case, as "mask.<i>.<tensor>" 0/1 tensors.
void write_dare_masks(const Model & base, const std::vector<LoraAdapter> & adapters, const MergeOptions & o,
                      const std::string & path) {
    std::vector<std::vector<float>> storage;
    std::vector<TensorToWrite>      tensors;
    storage.reserve(base.layout().entries().size() * adapters.size());
    for (const ParamEntry & e : base.layout().entries()) {
        for (size_t i = 0; i < adapters.size(); i++) {
            bool touched = false;
            for (int l = 0; l < base.config().num_layers; l++) {
                for (int t = 0; t < TARGET_COUNT; t++) {
                    touched |= adapters[i].has(l, t) && e.name == fmt::format("model.layers.{}.{}.{}.weight", l,
                                                                              t <= TARGET_O ? "self_attn" : "mlp",
                                                                              lora_target_name(t));
                }
            }
            if (!touched || o.densities[i] >= 1.0) {
                continue;
            }
            const uint64_t     stream = dare_stream(o.seed, e.name, i);
            std::vector<float> mask(e.numel());
            for (size_t j = 0; j < mask.size(); j++) {
                mask[j] = dare_keep(stream, j, o.densities[i]) ? 1.0f : 0.0f;
            }
            storage.push_back(std::move(mask));
            tensors.push_back({fmt::format("mask.{}.{}", i, e.name), e.shape, storage.back().data(), DType::F32});
        }
    }
    write_safetensors(path, tensors);
}

bool oracle_available() {
    return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

nlohmann::json case_json(const Case & c, const std::string & masks) {
    const MergeOptions & o = c.options;
    nlohmann::json       j = {{"name", c.name}, {"method", o.method}};
    j["weights"]           = o.weights.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.weights);
    j["densities"]         = o.densities.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.densities);
    j["normalize"]         = o.normalize < 0 ? nlohmann::json(nullptr) : nlohmann::json(o.normalize == 1);
    j["lambda"]            = o.lambda;
    j["rescale"]           = o.rescale.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.rescale);
    j["masks"]             = masks.empty() ? nlohmann::json(nullptr) : nlohmann::json(masks);
    return j;
}

// run_merge of dir/base with dir/adapter0, adapter1, ... as `options` say (paft parallel's merge),
// into dir/<name>; every tensor of the result.
std::map<std::string, std::vector<float>> merge_saved(const fs::path & dir, size_t adapters, const MergeOptions & options,
                                                      const std::string & name) {
    std::vector<std::string> dirs;
    for (size_t i = 0; i < adapters; i++) {
        dirs.push_back((dir / fmt::format("adapter{}", i)).string());
    }
    MergeRunOptions run;
    run.out            = (dir / name).string();
    run.seed           = options.seed;
    run.plain_progress = true;
    run.overwrite      = true;
    run_merge(adapter_merge_config((dir / "base").string(), dirs, options), run);
    const TensorStore                         store = TensorStore::open_dir(run.out);
    std::map<std::string, std::vector<float>> out;
    for (const std::string & tensor : store.names()) {
        out[tensor] = store.read_f32_any(tensor, nullptr);
    }
    return out;
}

// Saves base and adapters, runs the oracle over `cases`, and compares every tensor of paft's
// merge (run_merge) with it. Returns the largest relative error (max |diff| / max |want| per tensor).
double compare_with_oracle(Values values, const std::vector<Case> & cases) {
    const ModelConfig                      c        = small_config();
    const std::shared_ptr<Model>           base     = Model::random(c, 20);
    const std::vector<LoraAdapter>         adapters = two_adapters(c, values);
    const fs::path                         dir      = fresh_test_folder("paft-merge");
    base->save((dir / "base").string(), DType::F32);
    nlohmann::json spec = {{"base", (dir / "base").string()}, {"out", (dir / "expected").string()}};
    for (size_t i = 0; i < adapters.size(); i++) {
        const std::string adir = (dir / fmt::format("adapter{}", i)).string();
        adapters[i].save(adir, (dir / "base").string());
        spec["adapters"].push_back(adir);
    }
    for (const Case & k : cases) {
        std::string masks;
        if (k.options.method == "dare_ties") {
            masks = (dir / (k.name + ".masks.safetensors")).string();
            write_dare_masks(*base, adapters, k.options, masks);
        }
        spec["cases"].push_back(case_json(k, masks));
    }
    write_file_atomic((dir / "spec.json").string(), spec.dump(2));
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --spec '{}' 2>'{}'", kOracle, (dir / "spec.json").string(),
                                        (dir / "stderr").string());
    const int         rc  = std::system(cmd.c_str());
    if (rc != 0) {
        ADD_FAILURE() << "the merge oracle failed: " << cmd << "\n" << read_file((dir / "stderr").string());
        return NAN;
    }
    double worst = 0.0;
    for (const Case & k : cases) {
        SCOPED_TRACE(k.name);
        const auto            merged = merge_saved(dir, adapters.size(), k.options, k.name);
        const SafetensorsFile expected((dir / "expected" / (k.name + ".safetensors")).string());
        double                case_worst = 0.0;
        for (const ParamEntry & e : base->layout().entries()) {
            const std::vector<double> want = read_f64(expected, e.name);
            const std::vector<float> & got = merged.at(e.name);
            const double err = rel_error(std::vector<double>(got.begin(), got.end()), want);
            EXPECT_LE(err, 1e-6) << e.name;
            case_worst = nan_max(case_worst, err);
        }
        std::printf("  %-18s max relative error %.3g\n", k.name.c_str(), case_worst);
        worst = nan_max(worst, case_worst);
    }
    fs::remove_all(dir);
    return worst;
}

// merge_tensor on hand-made buffers.
std::vector<float> merge_small(const MergeOptions & o, const std::vector<float> & base,
                               const std::vector<std::vector<float>> & deltas, const std::string & name = "t") {
    // The options' parameters as a merge of that many adapters resolves them (placeholder paths).
    std::vector<std::string> names;
    for (size_t i = 0; i < deltas.size(); i++) {
        names.push_back(fmt::format("adapter{}", i));
    }
    const MergeConfig      c      = adapter_merge_config("base", names, o);
    const MergeMethodDef & method = *find_merge_method(o.method);
    const ParamLookup      lookup = [&](const std::string & key, int model) -> std::optional<ParamScalar> {
        const auto & settings = model >= 0 ? c.models[model].parameters : c.parameters;
        const auto   it       = settings.find(key);
        if (it != settings.end()) return evaluate_setting(it->second, name, 0.0);
        const auto global = c.parameters.find(key);
        return global == c.parameters.end() ? std::nullopt : evaluate_setting(global->second, name, 0.0);
    };
    TensorParams params = resolve_tensor_params(method, deltas.size(), lookup, name);
    params.seed         = o.seed;
    TensorInput in;
    in.name = name;
    in.n    = base.size();
    in.cols = base.size();
    in.base = base.data();
    for (const auto & d : deltas) {
        in.deltas.push_back(d.empty() ? nullptr : d.data());
    }
    MergeScratch       scratch;
    std::vector<float> out(base.size());
    merge_tensor(method, in, params, scratch, out.data());
    return out;
}

void expect_floats(const std::vector<float> & got, const std::vector<double> & want, double tol = 1e-6) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < got.size(); j++) {
        EXPECT_NEAR(got[j], want[j], tol) << "entry " << j;
    }
}

}  // namespace

TEST(Merge, OracleDyadicAllMethods) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    const double worst = compare_with_oracle(Values::dyadic, all_cases());
    std::printf("dyadic adapters, all methods: max relative error %.3g\n", worst);
    EXPECT_LE(worst, 1e-6);
}

// Trained-like factors: only the methods without a magnitude rank or sign election, whose
// results cannot flip on the last bit of an f32 product.
TEST(Merge, OracleContinuousWeightSpace) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    const double worst = compare_with_oracle(Values::continuous, weight_space_cases());
    std::printf("continuous adapters, linear and task_arithmetic: max relative error %.3g\n", worst);
    EXPECT_LE(worst, 1e-6);
}

TEST(Merge, MagnitudeTrimKeepsExactlyKWithIndexOrderTies) {
    std::vector<float> work;
    auto               trim = [&](std::vector<float> d, size_t k) {
        magnitude_trim(d.data(), d.size(), k, work);
        return d;
    };
    const std::vector<float> d = {1, -3, 3, 2, -3, 0};
    EXPECT_EQ(trim(d, 1), (std::vector<float>{0, -3, 0, 0, 0, 0}));
    EXPECT_EQ(trim(d, 2), (std::vector<float>{0, -3, 3, 0, 0, 0}));
    EXPECT_EQ(trim(d, 3), (std::vector<float>{0, -3, 3, 0, -3, 0}));
    EXPECT_EQ(trim(d, 4), (std::vector<float>{0, -3, 3, 2, -3, 0}));
    EXPECT_EQ(trim(d, 6), d);
}

// Three deltas of six entries, density 0.5 -> k = int(0.5 * 6) = 3 each:
//   d1 = [ 1.0, -2, 3, -0.5, 0.0,  4]  keeps -2, 3, 4
//   d2 = [-1.5,  2, 2,  0.5, 2.5, -1]  keeps 2, 2, 2.5
//   d3 = [ 0.5, .5, -4,  1,  1,  -2]   keeps -4, -2 and, of the tied 1s, index 3
// Weights 1: entry 0 has nothing left -> 0; entry 1: -2 + 2 = 0 elects +, keeps d2 -> 2;
// entry 2: 3 + 2 - 4 > 0 keeps d1, d2 -> 5/2; entry 3: d3 -> 1; entry 4: d2 -> 2.5;
// entry 5: 4 - 2 > 0 keeps d1 -> 4.
TEST(Merge, TiesTrimElectDisjointMeanByHand) {
    const std::vector<std::vector<float>> d = {
        {1.0f, -2, 3, -0.5f, 0.0f, 4}, {-1.5f, 2, 2, 0.5f, 2.5f, -1}, {0.5f, 0.5f, -4, 1, 1, -2}};
    const std::vector<float> zero(6, 0.0f), base = {10, 20, 30, 40, 50, 60};
    expect_floats(merge_small(opts("ties", {}, {0.5, 0.5, 0.5}), zero, d), {0, 2, 2.5, 1, 2.5, 4});
    // Weights 1, 2, 1: entry 1: -2 + 4 > 0 -> 4 / 2; entry 2: (3 + 4) / 3; entry 4: 5 / 2.
    expect_floats(merge_small(opts("ties", {1, 2, 1}, {0.5, 0.5, 0.5}), zero, d), {0, 2, 7.0 / 3, 1, 2.5, 4});
    // normalize false and lambda 2 on a base: base + 2 * (sum of agreeing w d).
    expect_floats(merge_small(opts("ties", {1, 2, 1}, {0.5, 0.5, 0.5}, 0, 2.0), base, d),
                  {10, 20 + 2 * 4, 30 + 2 * 7, 40 + 2 * 1, 50 + 2 * 5, 60 + 2 * 4});
    // Density 1: no trim. Entry 0: 1 - 1.5 + 0.5 = 0 elects +: (1 + 0.5) / 2; entry 1: (2 + 0.5) / 2;
    // entry 3: (0.5 + 1) / 2; entry 4: (2.5 + 1) / 2; entry 5: 4 - 1 - 2 > 0 keeps 4 alone.
    expect_floats(merge_small(opts("ties", {}, {}), zero, d), {0.75, 1.25, 2.5, 0.75, 1.75, 4});
    // A model with no delta (null) counts as zero: no vote, no weight in the divisor.
    expect_floats(merge_small(opts("ties", {1, 5}, {0.5, 0.5}), zero, {d[0], {}}), {0, -2, 3, 0, 0, 4});
}

TEST(Merge, WeightSpaceMethodsByHand) {
    const std::vector<float>              base = {1, 2};
    const std::vector<std::vector<float>> d    = {{0.5f, -1}, {1, 1}};
    // task_arithmetic: base + lambda * (2 d1 + d2) = base + 0.5 * [2, -1].
    expect_floats(merge_small(opts("task_arithmetic", {2, 1}, {}, -1, 0.5), base, d), {2, 1.5});
    expect_floats(merge_small(opts("task_arithmetic", {2, 1}, {}, 1), base, d), {1 + 2.0 / 3, 2 - 1.0 / 3});
    // linear: (2 (base + d1) + (base + d2)) / 3.
    expect_floats(merge_small(opts("linear", {2, 1}), base, d), {5.0 / 3, 5.0 / 3});
    expect_floats(merge_small(opts("linear", {2, 1}, {}, 0), base, d), {5, 5});
    // dare_ties with density 1 drops nothing: the election alone, no division by default.
    const std::vector<std::vector<float>> e = {{1, -2, 3}, {-3, 1, 1}};
    expect_floats(merge_small(opts("dare_ties", {}, {1, 1}), {0, 0, 0}, e), {-3, -2, 4});
}

TEST(Merge, DareDropAndRescale) {
    const size_t             n = 40000;
    const std::vector<float> base(n, 0.0f), ones(n, 1.0f);
    const double             p = 0.3;
    // rescale density: every survivor is exactly 1 / p, the rest 0.
    const std::vector<float> by_density = merge_small(opts("dare_ties", {}, {p}, -1, 1.0, "density"), base, {ones}, "w");
    size_t                   kept       = 0;
    for (size_t j = 0; j < n; j++) {
        ASSERT_TRUE(by_density[j] == 0.0f || by_density[j] == (float) (1.0 / p)) << by_density[j];
        kept += by_density[j] != 0.0f;
        EXPECT_EQ(by_density[j] != 0.0f, dare_keep(dare_stream(42, "w", 0), j, p));
    }
    const double sigma = std::sqrt(n * p * (1 - p));
    EXPECT_LT(std::fabs((double) kept - n * p), 5 * sigma) << kept;
    // rescale l1 (the default): the same survivors, scaled so the L1 norm is kept.
    const std::vector<float> by_l1 = merge_small(opts("dare_ties", {}, {p}), base, {ones}, "w");
    for (size_t j = 0; j < n; j++) {
        ASSERT_EQ(by_l1[j] != 0.0f, by_density[j] != 0.0f);
        if (by_l1[j] != 0.0f) {
            EXPECT_FLOAT_EQ(by_l1[j], (float) ((double) n / (double) kept));
        }
    }
    // rescale none: survivors unchanged.
    const std::vector<float> plain = merge_small(opts("dare_ties", {}, {p}, -1, 1.0, "none"), base, {ones}, "w");
    for (size_t j = 0; j < n; j++) {
        ASSERT_EQ(plain[j], by_density[j] != 0.0f ? 1.0f : 0.0f);
    }
    // Masks differ between models, tensors and seeds, and are independent: overlap ~ p^2.
    auto overlap = [&](uint64_t s1, uint64_t s2) {
        size_t both = 0;
        for (size_t j = 0; j < n; j++) {
            both += dare_keep(s1, j, p) && dare_keep(s2, j, p);
        }
        return (double) both / n;
    };
    const uint64_t ref = dare_stream(42, "w", 0);
    EXPECT_EQ(overlap(ref, ref), (double) kept / n);
    for (uint64_t other : {dare_stream(42, "w", 1), dare_stream(42, "v", 0), dare_stream(43, "w", 0)}) {
        EXPECT_NEAR(overlap(ref, other), p * p, 5 * std::sqrt(p * p * (1 - p * p) / n));
    }
}

// TIES trims each Hugging Face tensor by itself although q, k and v are stored as one matrix:
// with k_proj's delta 10x larger, a trim over the stacked block would keep mostly k entries.
TEST(Merge, TiesTrimsPerHuggingFaceTensor) {
    const ModelConfig c    = small_config();
    const auto        base = Model::random(c, 3);
    LoraAdapter       a    = make_adapter(c, "q_proj,k_proj,v_proj", 4, 8.0f, false, 5, Values::continuous);
    for (int l = 0; l < c.num_layers; l++) {
        for (int i = 0; i < a.out_features(TARGET_K) * a.config().r; i++) {
            a.B(l, TARGET_K)[i] *= 10.0f;
        }
    }
    const fs::path dir = fresh_test_folder("paft-merge");
    base->save((dir / "base").string(), DType::F32);
    a.save((dir / "adapter0").string(), (dir / "base").string());
    const auto merged = merge_saved(dir, 1, opts("ties", {}, {0.25}), "out");
    for (const ParamEntry & e : base->layout().entries()) {
        size_t changed = 0;
        for (size_t j = 0; j < e.numel(); j++) {
            changed += merged.at(e.name)[j] != base->data()[e.offset + j];
        }
        const bool targeted = e.name.find("_proj.weight") != std::string::npos &&
                              e.name.find("self_attn") != std::string::npos && e.name.find("o_proj") == std::string::npos;
        EXPECT_EQ(changed, targeted ? (size_t) (0.25 * (double) e.numel()) : 0) << e.name;
    }
}

TEST(Merge, UntouchedTensorsAreCopied) {
    const ModelConfig              c        = small_config();
    const auto                     base     = Model::random(c, 31);
    const std::vector<LoraAdapter> adapters = two_adapters(c, Values::continuous);
    const fs::path                 dir      = fresh_test_folder("paft-merge");
    base->save((dir / "base").string(), DType::F32);
    for (size_t i = 0; i < adapters.size(); i++) {
        adapters[i].save((dir / fmt::format("adapter{}", i)).string(), (dir / "base").string());
    }
    for (const MergeOptions & o : {opts("ties", {1, 0.5}, {0.5, 0.5}), opts("dare_ties", {1, 0.5}, {0.5, 0.5}),
                                   opts("task_arithmetic", {1, 0.5}), opts("linear", {0.3, 0.9})}) {
        const auto merged = merge_saved(dir, adapters.size(), o, o.method);
        for (const ParamEntry & e : base->layout().entries()) {
            if (e.name.find("_proj.weight") == std::string::npos) {
                EXPECT_EQ(std::memcmp(merged.at(e.name).data(), base->data() + e.offset, e.numel() * sizeof(float)), 0)
                    << o.method << " " << e.name;
            }
        }
    }
}

TEST(Merge, MergeAdapterIntoMatchesDoubleLoops) {
    const ModelConfig c       = small_config();
    const auto        base    = Model::random(c, 40);
    const auto        adapter = make_adapter(c, "q_proj,v_proj,o_proj,up_proj,down_proj", 4, 8.0f, true, 41,
                                             Values::continuous);
    const double      weight  = 0.7;
    auto              merged  = Model::random(c, 40);
    fold_lora_adapter(*merged, adapter, weight);
    const double s     = adapter.config().scale();
    double       worst = 0.0;
    for (const ParamEntry & e : base->layout().entries()) {
        std::vector<double> want(base->data() + e.offset, base->data() + e.offset + e.numel());
        for (int l = 0; l < c.num_layers; l++) {
            for (int t = 0; t < TARGET_COUNT; t++) {
                const std::string name = fmt::format("model.layers.{}.{}.{}.weight", l,
                                                     t <= TARGET_O ? "self_attn" : "mlp", lora_target_name(t));
                if (name != e.name || !adapter.has(l, t)) {
                    continue;
                }
                const int out = adapter.out_features(t), in = adapter.in_features(t), r = adapter.config().r;
                for (int o = 0; o < out; o++) {
                    for (int i = 0; i < in; i++) {
                        double acc = 0.0;
                        for (int k = 0; k < r; k++) {
                            acc += (double) adapter.B(l, t)[o * r + k] * (double) adapter.A(l, t)[k * in + i];
                        }
                        want[(size_t) o * in + i] += weight * s * acc;
                    }
                }
            }
        }
        const float * got = merged->data() + e.offset;
        const double  err = rel_error(std::vector<double>(got, got + e.numel()), want);
        EXPECT_LE(err, 1e-6) << e.name;
        worst = nan_max(worst, err);
    }
    std::printf("fold_lora_adapter: max relative error %.3g\n", worst);
}

TEST(Merge, ValidateNamesTheField) {
    expect_input_error([] { validate(opts("tie", {}), 2); }, {"method", "'tie'", "dare_ties"});
    expect_input_error([] { validate(opts("ties", {1, 2, 3}), 2); }, {"merge.weights", "3 values", "2 adapters"});
    expect_input_error([] { validate(opts("ties", {}, {0.5}), 2); }, {"merge.densities", "1 values"});
    expect_input_error([] { validate(opts("ties", {}, {0.5, 0.0}), 2); }, {"density (model 1)", "(0, 1]"});
    expect_input_error([] { validate(opts("dare_ties", {}, {1.5, 0.5}), 2); }, {"density (model 0)", "(0, 1]"});
    expect_input_error([] { validate(opts("ties", {}, {0.5, NAN}), 2); }, {"density (model 1)"});
    expect_input_error([] { validate(opts("ties", {1, INFINITY}), 2); }, {"weight (model 1)", "finite"});
    expect_input_error([] { validate(opts("ties", {}, {}, 2), 2); }, {"normalize"});
    expect_input_error([] { validate(opts("ties", {}, {}, -1, NAN), 2); }, {"lambda"});
    expect_input_error([] { validate(opts("linear", {}, {}, -1, 0.5), 2); }, {"lambda", "linear"});
    expect_input_error([] { validate(opts("task_arithmetic", {}, {0.5, 0.5}), 2); },
                       {"merge.densities", "task_arithmetic"});
    expect_input_error([] { validate(opts("ties", {}, {}, -1, 1.0, "l2"), 2); }, {"rescale", "'l2'"});
    expect_input_error([] { validate(opts("linear", {}, {}, -1, 1.0, "l1"), 2); }, {"rescale", "linear"});
    expect_input_error([] { validate(opts("linear", {1, -1}), 2); }, {"weight", "sum"});
    expect_input_error([] { validate(opts("ties", {}), 0); }, {"models", "gives 0"});
    EXPECT_NO_THROW(validate(opts("linear", {1, -1}, {}, 0), 2));
    EXPECT_NO_THROW(validate(opts("dare_ties", {1, 2}, {1.0, 0.1}, 1, 0.5, "density", 3), 2));
    expect_input_error([] { validate(opts("slerp", {}), 1); }, {"t", "slerp"});
    MergeOptions slerp = opts("slerp", {});
    slerp.t            = 0.3;
    EXPECT_NO_THROW(validate(slerp, 1));
    expect_input_error([] { validate(opts("model_stock", {1, 1}), 2); }, {"merge.weights", "model_stock", "'weight'"});
    expect_input_error([] { validate(opts("model_stock", {}), 1); }, {"model_stock", "at least 2"});
    expect_input_error([] { validate(opts("della", {}, {0.9, 0.5}), 2); }, {"epsilon (model 0)"});

    // A density so small that int(density * numel) == 0 for q_proj [32, 32]: found at that tensor.
    const fs::path    dir  = fresh_test_folder("paft-merge");
    const ModelConfig c    = small_config();
    Model::random(c, 1)->save((dir / "base").string(), DType::F32);
    make_adapter(c, "q_proj", 2, 2.0f, false, 1, Values::continuous).save((dir / "adapter0").string(), "base");
    expect_input_error([&] { merge_saved(dir, 1, opts("ties", {}, {1e-4}), "out"); },
                       {"density (model 0)", "model.layers.0.self_attn.q_proj.weight", "1024 entries"});
    EXPECT_FALSE(fs::exists(dir / "out"));
}
