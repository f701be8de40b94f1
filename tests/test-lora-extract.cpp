// LoRA extraction: factorize_delta against the float64 torch oracle (tools/reference/svd_ref.py,
// torch.linalg.svd) on deltas of many shapes: singular values, retained energy and B * A against
// the oracle's truncated reconstruction (the factors themselves are defined only up to sign),
// A's rows orthonormal, the zero padding past min(rows, cols); exact low-rank deltas; the zero
// delta; determinism inside OpenMP workers; the written adapter read back by LoraAdapter::load.
//
// Bounds. The oracle and dgesdd both work in float64 on the same f32 input, so their singular
// values and retained energies agree to ~1e-13; 1e-6 is the asked-for bound. The factors are
// stored in f32: rounding each entry moves a dot product of two unit rows by at most
// 2 * 2^-24 (Cauchy-Schwarz), hence 2e-7 for A A^T = I, and B * A by a few 2^-24 relative to its
// largest entry, hence 1e-6 for the products.
#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "merge/lora_extract.h"
#include "model/config.h"
#include "model/lora.h"

#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

using namespace paft;
namespace fs = std::filesystem;

namespace {

const std::string kOracle = std::string(PAFT_SOURCE_DIR) + "/tools/reference/svd_ref.py";

constexpr double kSpectrumBound = 1e-6;  // singular values, retained energy (float64 vs float64)
constexpr double kProductBound  = 1e-6;  // B * A from f32 factors vs the float64 reconstruction
constexpr double kOrthoBound    = 2e-7;  // |A A^T - I| from f32 rows

struct DeltaCase {
    std::string        name;
    int                rows = 0, cols = 0, rank = 0;
    std::vector<float> delta;  // [rows, cols]
};

std::vector<float> gaussian(int rows, int cols, uint64_t seed, float scale = 1.0f) {
    Random             rng(seed);
    std::vector<float> v((size_t) rows * cols);
    for (float & x : v) {
        x = scale * rng.normal();
    }
    return v;
}

// B0 [rows, k] * A0 [k, cols] with entries j/4, |j| <= 4: every product is a multiple of 1/16 of
// magnitude <= 16 k, so the f32 delta is exactly this product and has rank at most k.
std::vector<float> exact_low_rank(int rows, int cols, int k, uint64_t seed) {
    Random              rng(seed);
    std::vector<double> b((size_t) rows * k), a((size_t) k * cols);
    for (double & x : b) {
        x = (double) ((int) (rng.next_u64() % 9) - 4) / 4.0;
    }
    for (double & x : a) {
        x = (double) ((int) (rng.next_u64() % 9) - 4) / 4.0;
    }
    std::vector<float> d((size_t) rows * cols);
    for (int i = 0; i < rows; i++) {
        for (int c = 0; c < cols; c++) {
            double sum = 0.0;
            for (int j = 0; j < k; j++) {
                sum += b[(size_t) i * k + j] * a[(size_t) j * cols + c];
            }
            d[(size_t) i * cols + c] = (float) sum;
        }
    }
    return d;
}

// X [rows, n] diag(0.7^j) Y [n, cols] with Gaussian X, Y: a spectrum that decays like a trained
// delta's, with clear gaps between the leading singular values.
std::vector<float> decaying(int rows, int cols, int n, uint64_t seed) {
    const std::vector<float> x = gaussian(rows, n, seed), y = gaussian(n, cols, seed + 1);
    std::vector<float>       d((size_t) rows * cols);
    for (int i = 0; i < rows; i++) {
        for (int c = 0; c < cols; c++) {
            double sum = 0.0;
            for (int j = 0; j < n; j++) {
                sum += std::pow(0.7, j) * x[(size_t) i * n + j] * y[(size_t) j * cols + c];
            }
            d[(size_t) i * cols + c] = (float) sum;
        }
    }
    return d;
}

std::vector<DeltaCase> spectrum_cases() {
    return {
        {"tall", 96, 40, 6, gaussian(96, 40, 1)},
        {"wide", 40, 96, 6, gaussian(40, 96, 2)},
        {"square", 64, 64, 16, gaussian(64, 64, 3)},
        {"decaying", 200, 120, 16, decaying(200, 120, 40, 4)},
        {"exact_rank8", 80, 48, 8, exact_low_rank(80, 48, 8, 6)},
        {"exact_rank8_at_4", 48, 80, 4, exact_low_rank(48, 80, 8, 7)},
        {"deficient_rank5_at_12", 50, 30, 12, exact_low_rank(50, 30, 5, 8)},
        {"rank_over_min", 10, 7, 16, gaussian(10, 7, 9)},
        {"row_vector", 1, 33, 4, gaussian(1, 33, 10)},
        {"column_vector", 33, 1, 4, gaussian(33, 1, 11)},
        {"tiny_scale", 30, 20, 5, gaussian(30, 20, 12, 1e-20f)},
        {"zero", 20, 30, 4, std::vector<float>(20 * 30, 0.0f)},
    };
}

bool oracle_available() {
    return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

// Runs the oracle over `cases` in `dir`; returns the path of its output (empty on failure).
std::string run_oracle(const fs::path & dir, const std::vector<DeltaCase> & cases) {
    std::vector<TensorToWrite> tensors;
    nlohmann::json             spec = {{"deltas", (dir / "deltas.safetensors").string()},
                                       {"out", (dir / "expected.safetensors").string()}};
    for (const DeltaCase & c : cases) {
        tensors.push_back({c.name, {c.rows, c.cols}, c.delta.data(), DType::F32});
        spec["cases"].push_back({{"name", c.name}, {"rank", c.rank}});
    }
    write_safetensors((dir / "deltas.safetensors").string(), tensors);
    write_file_atomic((dir / "spec.json").string(), spec.dump(2));
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --spec '{}' 2>'{}'", kOracle,
                                        (dir / "spec.json").string(), (dir / "stderr").string());
    if (std::system(cmd.c_str()) != 0) {
        ADD_FAILURE() << "the SVD oracle failed: " << cmd << "\n" << read_file((dir / "stderr").string());
        return "";
    }
    return (dir / "expected.safetensors").string();
}

// A float64 tensor of the oracle's output.
std::vector<double> read_f64(const SafetensorsFile & file, const std::string & name) {
    const TensorInfo * info = file.find(name);
    if (!info || info->dtype != DType::F64) {
        ADD_FAILURE() << file.path() << ": no F64 tensor " << name;
        return {};
    }
    std::span<const uint8_t> bytes = file.bytes(*info);
    std::vector<double>      out(bytes.size() / sizeof(double));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}

// scale * B [rows, r] * A [r, cols] in double.
std::vector<double> product(const float * B, const float * A, int rows, int cols, int r, double scale = 1.0) {
    std::vector<double> p((size_t) rows * cols, 0.0);
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < r; j++) {
            const double b = scale * B[(size_t) i * r + j];
            for (int c = 0; c < cols; c++) {
                p[(size_t) i * cols + c] += b * A[(size_t) j * cols + c];
            }
        }
    }
    return p;
}

// max over j, l < kept of |A_j . A_l - [j == l]|.
double orthonormality_error(const LowRank & f, int kept) {
    double worst = 0.0;
    for (int j = 0; j < kept; j++) {
        for (int l = 0; l < kept; l++) {
            double dot = 0.0;
            for (int c = 0; c < f.cols; c++) {
                dot += (double) f.A[(size_t) j * f.cols + c] * f.A[(size_t) l * f.cols + c];
            }
            worst = nan_max(worst, std::fabs(dot - (j == l ? 1.0 : 0.0)));
        }
    }
    return worst;
}

// Rows of A and columns of B from `from` on are all zero.
bool padding_is_zero(const LowRank & f, int from) {
    for (int j = from; j < f.rank; j++) {
        for (int c = 0; c < f.cols; c++) {
            if (f.A[(size_t) j * f.cols + c] != 0.0f) {
                return false;
            }
        }
        for (int i = 0; i < f.rows; i++) {
            if (f.B[(size_t) i * f.rank + j] != 0.0f) {
                return false;
            }
        }
    }
    return true;
}

// The sign rule: the largest-magnitude entry of each kept row of A is positive.
bool signs_fixed(const LowRank & f, int kept) {
    for (int j = 0; j < kept; j++) {
        const float * a   = f.A.data() + (size_t) j * f.cols;
        const float * top =
            std::max_element(a, a + f.cols, [](float x, float y) { return std::fabs(x) < std::fabs(y); });
        if (*top < 0) {
            return false;
        }
    }
    return true;
}

ModelConfig small_config() {
    ModelConfig c;
    c.hidden_size       = 32;
    c.intermediate_size = 48;
    c.num_layers        = 2;
    c.num_heads         = 4;
    c.num_kv_heads      = 2;
    c.head_dim          = 8;
    c.vocab_size        = 40;
    return c;
}

}  // namespace

// Every case against the oracle: spectrum, retained energy, B * A, orthonormal A, padding.
TEST(LoraExtract, MatchesOracle) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    const std::vector<DeltaCase> cases    = spectrum_cases();
    const fs::path               dir      = fresh_test_folder("paft-lora-extract");
    const std::string            expected = run_oracle(dir, cases);
    ASSERT_FALSE(expected.empty());
    const SafetensorsFile want(expected);
    for (const DeltaCase & c : cases) {
        SCOPED_TRACE(c.name);
        const LowRank f    = factorize_delta(c.delta.data(), c.rows, c.cols, c.rank, c.name);
        const int     kept = std::min({c.rank, c.rows, c.cols});
        ASSERT_EQ(f.rows, c.rows);
        ASSERT_EQ(f.cols, c.cols);
        ASSERT_EQ(f.rank, c.rank);
        ASSERT_EQ(f.A.size(), (size_t) c.rank * c.cols);
        ASSERT_EQ(f.B.size(), (size_t) c.rows * c.rank);

        const std::vector<double> s = read_f64(want, c.name + ".s");
        ASSERT_EQ(f.singular_values.size(), s.size());
        const double s_err = rel_error(f.singular_values, s);
        EXPECT_LE(s_err, kSpectrumBound);
        const double retained = read_f64(want, c.name + ".retained").at(0);
        EXPECT_LE(std::fabs(f.retained - retained), kSpectrumBound * retained) << f.retained << " vs " << retained;

        const std::vector<double> recon  = read_f64(want, c.name + ".recon");
        const double              ba_err = rel_error(product(f.B.data(), f.A.data(), c.rows, c.cols, c.rank), recon);
        EXPECT_LE(ba_err, kProductBound);
        const bool zero = c.name == "zero";
        const double ortho = zero ? 0.0 : orthonormality_error(f, kept);
        EXPECT_LE(ortho, kOrthoBound);
        EXPECT_TRUE(padding_is_zero(f, zero ? 0 : kept));
        EXPECT_TRUE(signs_fixed(f, kept));
        std::printf("  %-22s [%3d, %3d] r %2d: retained %.9f, singular values %.2g, B*A %.2g, A A^T - I %.2g\n",
                    c.name.c_str(), c.rows, c.cols, c.rank, f.retained, s_err, ba_err, ortho);
    }
}

// B0 * A0 of rank 8 at rank 8: B * A is the delta itself, to f32 rounding, all energy retained.
TEST(LoraExtract, ExactLowRankReconstructs) {
    const int                rows = 72, cols = 56, k = 8;
    const std::vector<float> d    = exact_low_rank(rows, cols, k, 21);
    const LowRank            f    = factorize_delta(d.data(), rows, cols, k);
    const double err =
        rel_error(product(f.B.data(), f.A.data(), rows, cols, k), std::vector<double>(d.begin(), d.end()));
    EXPECT_LE(err, kProductBound);
    EXPECT_NEAR(f.retained, 1.0, 1e-12);
    // Singular values past the rank are rounding noise of the double SVD.
    EXPECT_LE(f.singular_values[k], 1e-12 * f.singular_values[0]);
    std::printf("rank-8 delta at rank 8: B*A - delta %.2g, retained 1 - %.2g\n", err, 1.0 - f.retained);
}

// Keeping every singular triple retains everything, exactly.
TEST(LoraExtract, FullRankRetainsExactlyOne) {
    const std::vector<float> d = gaussian(12, 9, 31);
    EXPECT_EQ(factorize_delta(d.data(), 12, 9, 9).retained, 1.0);
    EXPECT_EQ(factorize_delta(d.data(), 12, 9, 20).retained, 1.0);
}

TEST(LoraExtract, ZeroDelta) {
    const std::vector<float> d(15 * 4, 0.0f);
    const LowRank            f = factorize_delta(d.data(), 15, 4, 3);
    EXPECT_EQ(f.retained, 1.0);
    EXPECT_EQ(f.singular_values, std::vector<double>(4, 0.0));
    EXPECT_EQ(f.A, std::vector<float>(3 * 4, 0.0f));
    EXPECT_EQ(f.B, std::vector<float>(15 * 3, 0.0f));
}

// The same delta gives the same bits serially and in OpenMP workers running at once, and the
// caller's OpenMP thread count is left as it was.
TEST(LoraExtract, DeterministicInWorkers) {
    const std::vector<float> d      = decaying(150, 90, 30, 41);
    const LowRank            serial = factorize_delta(d.data(), 150, 90, 12);
    const int                before = omp_get_max_threads();
    constexpr int            kWorkers = 4;
    std::vector<LowRank>     results(kWorkers);
#pragma omp parallel for num_threads(kWorkers) schedule(static, 1)
    for (int w = 0; w < kWorkers; w++) {
        results[w] = factorize_delta(d.data(), 150, 90, 12);
    }
    EXPECT_EQ(omp_get_max_threads(), before);
    for (const LowRank & r : results) {
        EXPECT_EQ(r.A, serial.A);
        EXPECT_EQ(r.B, serial.B);
        EXPECT_EQ(r.singular_values, serial.singular_values);
        EXPECT_EQ(r.retained, serial.retained);
    }
}

TEST(LoraExtract, BadInput) {
    const std::vector<float> d = gaussian(4, 5, 51);
    expect_input_error([&] { factorize_delta(d.data(), 4, 5, 0, "layers.0.q"); }, {"layers.0.q", "rank", "0"});
    expect_input_error([&] { factorize_delta(d.data(), 0, 5, 2, "layers.0.q"); }, {"layers.0.q", "[0, 5]"});
    std::vector<float> bad = d;
    bad[1 * 5 + 2]         = NAN;
    expect_input_error([&] { factorize_delta(bad.data(), 4, 5, 2, "layers.0.q"); },
                       {"layers.0.q", "non-finite", "[1, 2]"});
    bad[1 * 5 + 2] = INFINITY;
    expect_input_error([&] { factorize_delta(bad.data(), 4, 5, 2, "layers.0.q"); }, {"layers.0.q", "[1, 2]"});
}

TEST(LoraExtract, ModuleOfTensorName) {
    int layer = -1, target = -1;
    EXPECT_TRUE(lora_module_of("model.layers.3.self_attn.q_proj.weight", &layer, &target));
    EXPECT_EQ(layer, 3);
    EXPECT_EQ(target, TARGET_Q);
    EXPECT_TRUE(lora_module_of("model.layers.12.mlp.down_proj.weight", &layer, &target));
    EXPECT_EQ(layer, 12);
    EXPECT_EQ(target, TARGET_DOWN);
    EXPECT_TRUE(lora_module_of("model.layers.0.self_attn.o_proj.weight", &layer, &target));
    EXPECT_EQ(target, TARGET_O);
    EXPECT_TRUE(lora_module_of("model.layers.0.mlp.gate_proj.weight", &layer, &target));
    EXPECT_EQ(target, TARGET_GATE);
    for (const char * other : {"model.layers.3.mlp.q_proj.weight", "model.layers.3.self_attn.up_proj.weight",
                               "model.layers.3.self_attn.q_proj.bias", "model.layers.03.self_attn.q_proj.weight",
                               "model.layers.x.self_attn.q_proj.weight", "model.layers.3.input_layernorm.weight",
                               "model.embed_tokens.weight", "lm_head.weight",
                               "model.layers.3.self_attn.q_proj.weight.x"}) {
        EXPECT_FALSE(lora_module_of(other, &layer, &target)) << other;
    }
}

// A written adapter reads back with scale 1 and s * B * A equal to the oracle's truncated
// deltas; a target missing in a layer is zero there; a target whose deltas are all zero is left
// out; the report lists every module.
TEST(LoraExtract, WrittenAdapterLoadsBack) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    const ModelConfig model = small_config();  // q [32, 32], k/v [16, 32], down [32, 48]
    const int         rank  = 4;
    struct Spec {
        int layer, target, rows, cols;
    };
    const std::vector<Spec> specs = {{0, TARGET_Q, 32, 32},    {0, TARGET_V, 16, 32}, {0, TARGET_DOWN, 32, 48},
                                     {1, TARGET_Q, 32, 32},    {1, TARGET_DOWN, 32, 48},
                                     {0, TARGET_K, 16, 32},    {1, TARGET_K, 16, 32}};
    std::vector<DeltaCase>     cases;
    std::vector<LowRankModule> modules;
    for (const Spec & s : specs) {
        const bool zero = s.target == TARGET_K;
        DeltaCase  c{fmt::format("l{}.{}", s.layer, lora_target_name(s.target)), s.rows, s.cols, rank,
                    zero ? std::vector<float>((size_t) s.rows * s.cols, 0.0f)
                         : decaying(s.rows, s.cols, 12, 100 + 10 * s.layer + s.target)};
        modules.push_back({s.layer, s.target, factorize_delta(c.delta.data(), c.rows, c.cols, rank, c.name)});
        cases.push_back(std::move(c));
    }
    const fs::path    dir      = fresh_test_folder("paft-lora-extract");
    const std::string expected = run_oracle(dir, cases);
    ASSERT_FALSE(expected.empty());
    const SafetensorsFile want(expected);
    const std::string     out = (dir / "adapter").string();
    write_lora_adapter(out, "/models/base", model, modules, rank);

    const LoraAdapter loaded = LoraAdapter::load(out, model);
    EXPECT_EQ(loaded.config().r, rank);
    EXPECT_EQ(loaded.config().alpha, (float) rank);
    EXPECT_EQ(loaded.config().scale(), 1.0f);
    std::array<bool, TARGET_COUNT> targets{};
    targets[TARGET_Q] = targets[TARGET_V] = targets[TARGET_DOWN] = true;
    EXPECT_EQ(loaded.config().targets, targets);
    for (size_t i = 0; i < specs.size(); i++) {
        const Spec & s = specs[i];
        if (s.target == TARGET_K) {
            continue;
        }
        SCOPED_TRACE(cases[i].name);
        const double err = rel_error(product(loaded.B(s.layer, s.target), loaded.A(s.layer, s.target), s.rows, s.cols,
                                             rank, loaded.config().scale()),
                                     read_f64(want, cases[i].name + ".recon"));
        EXPECT_LE(err, kProductBound);
    }
    // v is targeted but has no delta in layer 1.
    EXPECT_TRUE(std::all_of(loaded.A(1, TARGET_V), loaded.A(1, TARGET_V) + rank * 32, [](float x) { return x == 0; }));
    EXPECT_TRUE(std::all_of(loaded.B(1, TARGET_V), loaded.B(1, TARGET_V) + 16 * rank, [](float x) { return x == 0; }));

    const nlohmann::json config = nlohmann::json::parse(read_file(out + "/adapter_config.json"));
    EXPECT_EQ(config["peft_type"], "LORA");
    EXPECT_EQ(config["task_type"], "CAUSAL_LM");
    EXPECT_EQ(config["base_model_name_or_path"], "/models/base");
    EXPECT_EQ(config["r"], rank);
    EXPECT_EQ(config["lora_alpha"], rank);
    EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "v_proj", "down_proj"}));

    // The report: modules in (layer, target) order, each retained energy from the oracle, and
    // the total as kept energy over all energy, summed from the oracle's spectra.
    const nlohmann::json report = nlohmann::json::parse(read_file(out + "/lora_extraction.json"));
    EXPECT_EQ(report["rank"], rank);
    const std::vector<std::string> order = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                            "model.layers.0.self_attn.v_proj", "model.layers.0.mlp.down_proj",
                                            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj",
                                            "model.layers.1.mlp.down_proj"};
    const std::vector<int> case_of = {0, 5, 1, 2, 3, 6, 4};  // index in specs of each line of `order`
    ASSERT_EQ(report["modules"].size(), order.size());
    double kept = 0.0, total = 0.0, retained_min = 1.0;
    for (size_t m = 0; m < order.size(); m++) {
        const nlohmann::json &    line = report["modules"][m];
        const Spec &              s    = specs[case_of[m]];
        const std::vector<double> sv   = read_f64(want, cases[case_of[m]].name + ".s");
        const double              want_retained = read_f64(want, cases[case_of[m]].name + ".retained").at(0);
        EXPECT_EQ(line["module"], order[m]);
        EXPECT_EQ(line["shape"], nlohmann::json({s.rows, s.cols}));
        EXPECT_NEAR(line["retained"].get<double>(), want_retained, kSpectrumBound * want_retained);
        EXPECT_EQ(line["singular_values"].size(), (size_t) rank);
        for (size_t j = 0; j < sv.size(); j++) {
            total += sv[j] * sv[j];
            kept += j < (size_t) rank ? sv[j] * sv[j] : 0.0;
        }
        retained_min = std::min(retained_min, want_retained);
    }
    EXPECT_NEAR(report["retained_total"].get<double>(), kept / total, kSpectrumBound);
    EXPECT_NEAR(report["retained_min"].get<double>(), retained_min, kSpectrumBound);
    std::printf("adapter: retained_total %.6f, retained_min %.6f\n", report["retained_total"].get<double>(),
                report["retained_min"].get<double>());
}

// Every delta zero: the adapter keeps the targets given (all zero), so it still loads.
TEST(LoraExtract, AllZeroAdapterKeepsGivenTargets) {
    const ModelConfig          model = small_config();
    const std::vector<float>   zero(32 * 32, 0.0f);
    std::vector<LowRankModule> modules;
    for (int l = 0; l < model.num_layers; l++) {
        modules.push_back({l, TARGET_O, factorize_delta(zero.data(), 32, 32, 2)});
    }
    const fs::path dir = fresh_test_folder("paft-lora-extract");
    write_lora_adapter((dir / "adapter").string(), "base", model, modules, 2);
    const LoraAdapter loaded = LoraAdapter::load((dir / "adapter").string(), model);
    std::array<bool, TARGET_COUNT> targets{};
    targets[TARGET_O] = true;
    EXPECT_EQ(loaded.config().targets, targets);
    EXPECT_EQ(loaded.params(), std::vector<float>(loaded.params().size(), 0.0f));
}

TEST(LoraExtract, WriterBadInput) {
    const ModelConfig        model = small_config();
    const std::vector<float> q     = gaussian(32, 32, 61);
    const LowRank            f     = factorize_delta(q.data(), 32, 32, 4);
    expect_input_error([&] { lora_adapter_from_factors(model, {}, 4); }, {"no q/k/v/o/gate/up/down_proj delta"});
    expect_input_error([&] { lora_adapter_from_factors(model, {{0, TARGET_Q, f}, {0, TARGET_Q, f}}, 4); },
                       {"model.layers.0.self_attn.q_proj", "twice"});
    expect_input_error([&] { lora_adapter_from_factors(model, {{0, TARGET_K, f}}, 4); },
                       {"model.layers.0.self_attn.k_proj", "[32, 32]", "[16, 32]"});
    expect_input_error([&] { lora_adapter_from_factors(model, {{2, TARGET_Q, f}}, 4); }, {"layer 2", "2-layer"});
    expect_input_error([&] { lora_adapter_from_factors(model, {{0, TARGET_Q, f}}, 8); },
                       {"model.layers.0.self_attn.q_proj", "rank 4", "rank 8"});
}
