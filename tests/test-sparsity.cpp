// Sparsity of deltas (the PAFT paper's Figure 2): paft's counts per (layer, module) against the
// float64 numpy oracle (tools/reference/sparsity_ref.py, reading the same files) for LoRA adapters
// written here (B with zero and tiny rows, A with zero columns, so some delta entries are exactly
// 0, some tiny and the rest random; a hand-written adapter wider than one tile) and for fine-tuned
// models against their base (exact zero, tiny, small and exactly-at-threshold changes; F32 sharded
// and BF16). Also hand counts, the command's table, JSON fields, the SVG (parsed as XML by the
// oracle), determinism across thread counts, and the errors for bad input.
#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "io/svg_chart.h"
#include "merge/sparsity.h"
#include "model/lora.h"
#include "model/model.h"

#include "cli_util.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

using namespace paft;
namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

const std::string kOracle = std::string(PAFT_SOURCE_DIR) + "/tools/reference/sparsity_ref.py";
const double      kHalfMilli = 0.0009765625;  // 2^-10: a threshold that deltas can equal exactly

bool oracle_available() {
    static const bool available = std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
    return available;
}

ModelConfig small_config() {
    ModelConfig c    = small_test_config(3);
    c.attention_bias = true;  // q, k, v, o biases: tensors outside the seven weights, grouped apart
    c.o_proj_bias    = true;
    return c;
}

// Row i of B: zero when i % 4 == 0 (a zero row of delta), tiny (1e-9 scale, far below 1e-5) when
// i % 4 == 1, normal(0, 0.3) otherwise. Column j of A: zero when j % 5 == 0, normal(0, 0.3)
// otherwise. So delta has exact zeros, tiny values and values spread around any threshold.
LoraAdapter structured_adapter(const ModelConfig & c, const std::string & targets, int r, float alpha, bool rslora,
                               uint64_t seed) {
    LoraAdapter a(c, test_lora_config(targets, r, alpha, rslora));
    Random      rng(seed);
    for (int l = 0; l < a.layers(); l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!a.has(l, t)) {
                continue;
            }
            for (int i = 0; i < r; i++) {
                for (int j = 0; j < a.in_features(t); j++) {
                    a.A(l, t)[(size_t) i * a.in_features(t) + j] = j % 5 == 0 ? 0.0f : 0.3f * rng.normal();
                }
            }
            for (int i = 0; i < a.out_features(t); i++) {
                for (int k = 0; k < r; k++) {
                    const float v = rng.normal();
                    a.B(l, t)[(size_t) i * r + k] = i % 4 == 0 ? 0.0f : i % 4 == 1 ? 1e-9f * v : 0.3f * v;
                }
            }
        }
    }
    return a;
}

// A PEFT folder written by hand: one module wider than a tile (1000 x 1100 > 2^20 entries), in a
// layer, and one outside the layers (lm_head), r = 2, s = 16 / 2.
void write_wide_adapter(const fs::path & dir) {
    fs::create_directories(dir);
    Random             rng(7);
    std::vector<float> a1(2 * 1100), b1(1000 * 2), a2(2 * 32), b2(40 * 2);
    for (auto * v : {&a1, &b1, &a2, &b2}) {
        for (size_t i = 0; i < v->size(); i++) {
            (*v)[i] = i % 7 == 3 ? 0.0f : 0.05f * rng.normal();
        }
    }
    write_safetensors((dir / "adapter_model.safetensors").string(),
                      {{"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", {2, 1100}, a1.data()},
                       {"base_model.model.model.layers.0.mlp.up_proj.lora_B.weight", {1000, 2}, b1.data()},
                       {"base_model.model.lm_head.lora_A.weight", {2, 32}, a2.data()},
                       {"base_model.model.lm_head.lora_B.weight", {40, 2}, b2.data()}});
    spit(dir / "adapter_config.json",
         R"({"peft_type": "LORA", "r": 2, "lora_alpha": 16, "target_modules": ["up_proj", "lm_head"]})");
}

// The float offset and size of tensor `name` in a model's buffer.
std::pair<size_t, size_t> find_tensor(const Model & m, const std::string & name) {
    for (const ParamEntry & e : m.layout().entries()) {
        if (e.name == name) {
            return {e.offset, e.numel()};
        }
    }
    ADD_FAILURE() << "no tensor " << name;
    return {0, 0};
}

// A fine-tuned model: the base with q_proj of layer 0 moved by 1e-3 on even entries, down_proj of
// layer 1 by tiny amounts (1e-7 scale), every third embedding entry by normal(0, 0.02), and the
// first 5 entries of the final norm by exactly 2^-10 (the norms are 1, so 1 + 2^-10 is exact).
std::shared_ptr<Model> fine_tuned(const ModelConfig & c) {
    auto   m = Model::random(c, 1);
    Random rng(5);
    auto [q, nq] = find_tensor(*m, "model.layers.0.self_attn.q_proj.weight");
    for (size_t i = 0; i < nq; i += 2) {
        m->data()[q + i] += 1e-3f;
    }
    auto [d, nd] = find_tensor(*m, "model.layers.1.mlp.down_proj.weight");
    for (size_t i = 0; i < nd; i++) {
        m->data()[d + i] += 1e-7f * rng.normal();
    }
    auto [e, ne] = find_tensor(*m, "model.embed_tokens.weight");
    for (size_t i = 0; i < ne; i += 3) {
        m->data()[e + i] += 0.02f * rng.normal();
    }
    auto [n, nn] = find_tensor(*m, "model.norm.weight");
    for (size_t i = 0; i < 5; i++) {
        m->data()[n + i] += (float) kHalfMilli;
    }
    return m;
}

// The test's files, made once: adapters, a base and fine-tuned models.
struct Fixture {
    fs::path dir, sft, dpo, fresh, wide, base, ft, ft_bf16;
};

const Fixture & fixture() {
    static Fixture f = [] {
        Fixture x;
        x.dir = fs::temp_directory_path() / fmt::format("paft-sparsity-{}", ::getpid());
        fs::remove_all(x.dir);
        fs::create_directories(x.dir);
        test_folders_to_remove().push_back(x.dir);
        const ModelConfig c = small_config();
        x.sft = x.dir / "sft", x.dpo = x.dir / "dpo", x.fresh = x.dir / "fresh", x.wide = x.dir / "wide";
        x.base = x.dir / "base", x.ft = x.dir / "ft", x.ft_bf16 = x.dir / "ft-bf16";
        structured_adapter(c, "all-linear", 4, 8.0f, false, 11).save(x.sft.string(), x.base.string());
        structured_adapter(c, "q_proj,v_proj,down_proj", 4, 6.0f, true, 12).save(x.dpo.string(), x.base.string());
        LoraConfig lc;
        lc.targets = parse_lora_targets("q_proj,v_proj");
        LoraAdapter fresh(c, lc);
        fresh.init_peft(3);  // B = 0: every delta entry is 0
        fresh.save(x.fresh.string(), x.base.string());
        write_wide_adapter(x.wide);
        Model::random(c, 1)->save(x.base.string(), DType::F32);
        auto ft = fine_tuned(c);
        ft->save(x.ft.string(), DType::F32, 20000);  // several shards and an index
        ft->save(x.ft_bf16.string(), DType::BF16);
        return x;
    }();
    return f;
}

// The oracle's counts for `paths` (adapters or models against `base`): one run per threshold.
json oracle_counts(const std::vector<fs::path> & paths, const fs::path & base, const std::vector<double> & thresholds,
                   const fs::path & out) {
    std::string cmd = fmt::format("/usr/bin/python3 '{}' --out '{}'", kOracle, out.string());
    for (double t : thresholds) {
        cmd += fmt::format(" --threshold {:.17g}", t);
    }
    if (!base.empty()) {
        cmd += fmt::format(" --base '{}'", base.string());
    }
    for (const fs::path & p : paths) {
        cmd += fmt::format(" '{}'", p.string());
    }
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return json::parse(slurp(out));
}

using Key = std::tuple<int, std::string>;

std::map<Key, std::pair<int64_t, int64_t>> oracle_entries(const json & input) {
    std::map<Key, std::pair<int64_t, int64_t>> m;
    for (const json & e : input["entries"]) {
        m[{e["layer"].is_null() ? -1 : e["layer"].get<int>(), e["module"]}] = {e["near_zero"], e["total"]};
    }
    return m;
}

void expect_matches_oracle(const SparsityReport & report, const json & oracle, const std::string & what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(oracle["ambiguous"], 0) << "an entry lies within float32 rounding of the threshold: change the data";
    std::map<Key, std::pair<int64_t, int64_t>> got;
    for (const SparsityCount & c : report.counts) {
        got[{c.layer, c.module}] = {c.near_zero, c.total};
    }
    EXPECT_EQ(got, oracle_entries(oracle));
}

}  // namespace

TEST(Sparsity, AdaptersMatchOracle) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no numpy";
    }
    const Fixture &             f     = fixture();
    const fs::path              tmp   = fresh_test_folder("paft-sparsity");
    const std::vector<fs::path> paths = {f.sft, f.dpo, f.fresh, f.wide};
    const std::vector<double>   thresholds = {1e-5, 0.05};
    const json                  runs       = oracle_counts(paths, {}, thresholds, tmp / "oracle.json")["runs"];
    ASSERT_EQ(runs.size(), thresholds.size());
    for (size_t k = 0; k < thresholds.size(); k++) {
        const double threshold = thresholds[k];
        const json & oracle    = runs[k];
        ASSERT_EQ(oracle["inputs"].size(), paths.size());
        for (size_t i = 0; i < paths.size(); i++) {
            const SparsityReport r = adapter_sparsity(paths[i].string(), threshold);
            EXPECT_EQ(r.kind, DeltaKind::adapter);
            expect_matches_oracle(r, oracle["inputs"][i], fmt::format("{} at {}", paths[i].string(), threshold));
        }
    }
    // The data make the comparison mean something: each sft module has near-zero entries and others.
    const SparsityReport sft = adapter_sparsity(f.sft.string(), 1e-5);
    ASSERT_EQ(sft.counts.size(), 3u * 7u);
    for (const SparsityCount & c : sft.counts) {
        EXPECT_GT(c.near_zero, 0) << c.module;
        EXPECT_LT(c.near_zero, c.total) << c.module;
    }
}

// Counts that follow from the data alone.
TEST(Sparsity, HandCounts) {
    const Fixture & f = fixture();
    // A fresh adapter (B = 0) is all zeros: 3 layers of q [32, 32] and v [16, 32].
    const SparsityReport fresh = adapter_sparsity(f.fresh.string(), 1e-5);
    EXPECT_EQ(overall_share(fresh).total, 3 * (32 * 32 + 16 * 32));
    EXPECT_EQ(overall_share(fresh).near_zero, overall_share(fresh).total);
    EXPECT_EQ(sparsity_modules({fresh}), (std::vector<std::string>{"q_proj", "v_proj"}));
    // The wide adapter: groups (0, up_proj) and (-1, lm_head), layers last.
    const SparsityReport wide = adapter_sparsity(f.wide.string(), 1e-5);
    ASSERT_EQ(wide.counts.size(), 2u);
    EXPECT_EQ(std::make_tuple(wide.counts[0].layer, wide.counts[0].module, wide.counts[0].total),
              std::make_tuple(0, std::string("up_proj"), (int64_t) 1000 * 1100));
    EXPECT_EQ(std::make_tuple(wide.counts[1].layer, wide.counts[1].module, wide.counts[1].total),
              std::make_tuple(-1, std::string("lm_head"), (int64_t) 40 * 32));

    const SparsityReport m = model_sparsity(f.ft.string(), f.base.string(), 1e-5);
    // q of layer 0: odd entries unchanged, even ones moved by 1e-3: half of 32 x 32.
    EXPECT_EQ(cell_share(m, 0, "q_proj").near_zero, 512);
    EXPECT_EQ(cell_share(m, 0, "q_proj").total, 1024);
    // down of layer 1: every change is below 1e-5.
    EXPECT_EQ(cell_share(m, 1, "down_proj").near_zero, 32 * 48);
    // Untouched tensors: all zero; the biases and norms have their own groups.
    EXPECT_EQ(cell_share(m, 2, "gate_proj").near_zero, 48 * 32);
    EXPECT_EQ(cell_share(m, 1, "q_proj.bias").total, 32);
    EXPECT_EQ(cell_share(m, 2, "input_layernorm").total, 32);
    // The final norm: 5 entries moved by exactly 2^-10, which is not below a 2^-10 threshold.
    EXPECT_EQ(cell_share(m, -1, "norm").near_zero, 32 - 5);
    EXPECT_EQ(cell_share(model_sparsity(f.ft.string(), f.base.string(), kHalfMilli), -1, "norm").near_zero, 32 - 5);
    EXPECT_EQ(cell_share(model_sparsity(f.ft.string(), f.base.string(), 2 * kHalfMilli), -1, "norm").near_zero, 32);
    // Module order: the seven projections (each with its bias), then other layer tensors, then
    // the tensors outside the layers.
    EXPECT_EQ(sparsity_modules({m}),
              (std::vector<std::string>{"q_proj", "q_proj.bias", "k_proj", "k_proj.bias", "v_proj", "v_proj.bias",
                                        "o_proj", "o_proj.bias", "gate_proj", "up_proj", "down_proj",
                                        "input_layernorm", "post_attention_layernorm", "embed_tokens", "lm_head",
                                        "norm"}));
    // The overall share is entry-weighted: the sum of every group.
    int64_t near = 0, total = 0;
    for (const SparsityCount & c : m.counts) {
        near += c.near_zero;
        total += c.total;
    }
    EXPECT_EQ(overall_share(m).near_zero, near);
    EXPECT_EQ(overall_share(m).total, total);
    EXPECT_EQ(total, (int64_t) Model::random(small_config(), 1)->size());
}

TEST(Sparsity, ModelsMatchOracle) {
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no numpy";
    }
    const Fixture & f   = fixture();
    const fs::path  tmp = fresh_test_folder("paft-sparsity");
    const std::vector<double> thresholds = {1e-5, kHalfMilli, 0.01};
    const json                runs       = oracle_counts({f.ft, f.ft_bf16}, f.base, thresholds, tmp / "oracle.json")["runs"];
    ASSERT_EQ(runs.size(), thresholds.size());
    for (size_t k = 0; k < thresholds.size(); k++) {
        const double threshold = thresholds[k];
        const json & oracle    = runs[k];
        expect_matches_oracle(model_sparsity(f.ft.string(), f.base.string(), threshold), oracle["inputs"][0],
                              fmt::format("ft at {}", threshold));
        expect_matches_oracle(measure_sparsity(f.ft_bf16.string(), f.base.string(), threshold), oracle["inputs"][1],
                              fmt::format("ft-bf16 at {}", threshold));
    }
}

TEST(Sparsity, ThreadsDoNotChangeCounts) {
    const Fixture & f = fixture();
    const int       threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const SparsityReport a1 = adapter_sparsity(f.sft.string(), 0.05), m1 = model_sparsity(f.ft.string(), f.base.string(), 1e-5);
    omp_set_num_threads(3);
    const SparsityReport a3 = adapter_sparsity(f.sft.string(), 0.05), m3 = model_sparsity(f.ft.string(), f.base.string(), 1e-5);
    omp_set_num_threads(threads);
    auto same = [](const SparsityReport & x, const SparsityReport & y) {
        ASSERT_EQ(x.counts.size(), y.counts.size());
        for (size_t i = 0; i < x.counts.size(); i++) {
            EXPECT_EQ(std::tie(x.counts[i].layer, x.counts[i].module, x.counts[i].near_zero, x.counts[i].total),
                      std::tie(y.counts[i].layer, y.counts[i].module, y.counts[i].near_zero, y.counts[i].total));
        }
    };
    same(a1, a3);
    same(m1, m3);
}

// The command: table, JSON (same counts as the library, consistent aggregates), SVG.
TEST(Sparsity, CommandOutputs) {
    const Fixture & f   = fixture();
    const fs::path  tmp = fresh_test_folder("paft-sparsity");
    const std::vector<std::string> args = {"sparsity", f.sft.string(), f.dpo.string(), f.fresh.string(), "--labels",
                                           "sft,dpo <&>,fresh", "--json", (tmp / "s.json").string(), "--svg",
                                           (tmp / "s.svg").string(), "--threshold", "0.05"};
    std::vector<std::string> a1 = args, a3 = args;
    a1.insert(a1.end(), {"--threads", "1"});
    a3.insert(a3.end(), {"--threads", "3"});
    const RunResult r = run_paft(a1, tmp);
    ASSERT_EQ(r.code, 0) << describe(r);
    const std::string json_text = slurp(tmp / "s.json"), svg = slurp(tmp / "s.svg");
    const RunResult   again = run_paft(a3, tmp);
    ASSERT_EQ(again.code, 0) << describe(again);
    EXPECT_EQ(again.out, r.out);
    EXPECT_EQ(slurp(tmp / "s.json"), json_text);
    EXPECT_EQ(slurp(tmp / "s.svg"), svg);

    // JSON: per input, overall = sum of entries, modules and layers = their sums, shares = ratios.
    const json j = json::parse(json_text);
    EXPECT_DOUBLE_EQ(j["threshold"].get<double>(), 0.05);
    ASSERT_EQ(j["inputs"].size(), 3u);
    const std::vector<fs::path> paths = {f.sft, f.dpo, f.fresh};
    for (size_t i = 0; i < 3; i++) {
        const json &         in     = j["inputs"][i];
        const SparsityReport report = adapter_sparsity(paths[i].string(), 0.05);
        EXPECT_EQ(in["path"], paths[i].string());
        EXPECT_EQ(in["kind"], "adapter");
        std::map<std::string, std::pair<int64_t, int64_t>> modules;
        std::map<int, std::pair<int64_t, int64_t>>         layers;
        int64_t                                            near = 0, total = 0;
        ASSERT_EQ(in["entries"].size(), report.counts.size());
        for (size_t k = 0; k < report.counts.size(); k++) {
            const json & e = in["entries"][k];
            EXPECT_EQ(e["layer"], report.counts[k].layer);
            EXPECT_EQ(e["module"], report.counts[k].module);
            EXPECT_EQ(e["near_zero"], report.counts[k].near_zero);
            EXPECT_EQ(e["total"], report.counts[k].total);
            EXPECT_DOUBLE_EQ(e["sparsity"].get<double>(), e["near_zero"].get<double>() / e["total"].get<double>());
            auto & by_module = modules[e["module"].get<std::string>()];
            auto & by_layer  = layers[e["layer"].get<int>()];
            by_module.first += e["near_zero"].get<int64_t>();
            by_module.second += e["total"].get<int64_t>();
            by_layer.first += e["near_zero"].get<int64_t>();
            by_layer.second += e["total"].get<int64_t>();
            near += e["near_zero"].get<int64_t>();
            total += e["total"].get<int64_t>();
        }
        EXPECT_EQ(in["near_zero"], near);
        EXPECT_EQ(in["total"], total);
        for (const json & m : in["modules"]) {
            EXPECT_EQ(std::make_pair(m["near_zero"].get<int64_t>(), m["total"].get<int64_t>()),
                      modules[m["module"].get<std::string>()]);
        }
        EXPECT_EQ(in["modules"].size(), modules.size());
        for (const json & l : in["layers"]) {
            EXPECT_EQ(std::make_pair(l["near_zero"].get<int64_t>(), l["total"].get<int64_t>()),
                      layers[l["layer"].get<int>()]);
        }
        EXPECT_EQ(in["layers"].size(), 3u);
    }

    // Table: the module rows with each input's share ("-" where an input lacks the module).
    auto pct = [&](size_t input, const std::string & module) {
        for (const json & m : j["inputs"][input]["modules"]) {
            if (m["module"] == module) {
                return fmt::format("{:.2f}%", 100.0 * m["sparsity"].get<double>());
            }
        }
        return std::string("-");
    };
    EXPECT_NE(r.out.find("sft"), std::string::npos);
    for (const std::string module : {"q_proj", "k_proj", "down_proj"}) {
        const std::string row_start = "\n" + module + " ";
        const size_t      at        = r.out.find(row_start);
        ASSERT_NE(at, std::string::npos) << module << "\n" << r.out;
        const std::string row = r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1);
        std::vector<std::string> cells;
        std::istringstream       ss(row);
        for (std::string cell; ss >> cell;) {
            cells.push_back(cell);
        }
        EXPECT_EQ(cells, (std::vector<std::string>{module, pct(0, module), pct(1, module), pct(2, module)})) << row;
    }
    EXPECT_NE(r.out.find("\noverall "), std::string::npos);
    EXPECT_NE(r.out.find("per layer: sft (adapter, "), std::string::npos);
    EXPECT_EQ(pct(1, "k_proj"), "-");
    EXPECT_EQ(pct(2, "q_proj"), "100.00%");

    // --json - prints the same JSON on stdout instead of the table.
    std::vector<std::string> to_stdout(args.begin(), args.begin() + 7);
    to_stdout.insert(to_stdout.end(), {"-", "--threshold", "0.05"});
    const RunResult js = run_paft(to_stdout, tmp);
    ASSERT_EQ(js.code, 0) << describe(js);
    EXPECT_EQ(js.out, json_text);

    // SVG: valid XML (the oracle parses it), a bar per (input, module or overall) the input has,
    // with the JSON's share; a point per (input, layer); both legends name the inputs, escaped.
    if (!oracle_available()) {
        GTEST_SKIP() << "/usr/bin/python3 has no numpy";
    }
    const std::string cmd = fmt::format("/usr/bin/python3 '{}' --check-svg '{}' --out '{}'", kOracle,
                                        (tmp / "s.svg").string(), (tmp / "svg.json").string());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const json check = json::parse(slurp(tmp / "svg.json"));
    EXPECT_EQ(check["root"], "{http://www.w3.org/2000/svg}svg");
    const std::vector<std::string> labels = {"sft", "dpo <&>", "fresh"};
    std::vector<std::string>       legend = labels;
    legend.insert(legend.end(), labels.begin(), labels.end());
    EXPECT_EQ(check["legend"].get<std::vector<std::string>>(), legend);
    EXPECT_EQ(check["titles"].size(), 2u);
    std::multiset<std::string> want_bars, want_points;
    for (size_t i = 0; i < 3; i++) {
        const json & in = j["inputs"][i];
        for (const json & m : in["modules"]) {
            want_bars.insert(fmt::format("{}, {}: {:.2f}%", labels[i], m["module"].get<std::string>(),
                                         100.0 * m["sparsity"].get<double>()));
        }
        want_bars.insert(fmt::format("{}, overall: {:.2f}%", labels[i], 100.0 * in["sparsity"].get<double>()));
        for (const json & l : in["layers"]) {
            want_points.insert(fmt::format("{}, {}: {:.2f}%", labels[i], l["layer"].get<int>(),
                                           100.0 * l["sparsity"].get<double>()));
        }
    }
    const auto bars = check["bars"].get<std::vector<std::string>>(), points = check["points"].get<std::vector<std::string>>();
    EXPECT_EQ(std::multiset<std::string>(bars.begin(), bars.end()), want_bars);
    EXPECT_EQ(std::multiset<std::string>(points.begin(), points.end()), want_points);
}

TEST(Sparsity, CommandWithModels) {
    const Fixture & f   = fixture();
    const fs::path  tmp = fresh_test_folder("paft-sparsity");
    const RunResult r   = run_paft({"sparsity", f.ft.string(), f.ft_bf16.string(), f.sft.string(), "--base",
                                    f.base.string(), "--json", (tmp / "m.json").string()},
                                   tmp);
    ASSERT_EQ(r.code, 0) << describe(r);
    const json j = json::parse(slurp(tmp / "m.json"));
    EXPECT_EQ(j["inputs"][0]["label"], "ft");
    EXPECT_EQ(j["inputs"][1]["label"], "ft-bf16");
    EXPECT_EQ(j["inputs"][0]["kind"], "model");
    EXPECT_EQ(j["inputs"][2]["kind"], "adapter");
    const SparsityReport m = model_sparsity(f.ft.string(), f.base.string(), 1e-5);
    EXPECT_EQ(j["inputs"][0]["near_zero"], overall_share(m).near_zero);
    EXPECT_EQ(j["inputs"][0]["entries"].back()["layer"], nullptr);  // outside the layers: null
    EXPECT_NE(r.out.find("\nembed_tokens "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("per layer: ft (model, "), std::string::npos);
}

TEST(Sparsity, BadInput) {
    const Fixture & f   = fixture();
    const fs::path  tmp = fresh_test_folder("paft-sparsity");
    const std::string missing = (tmp / "nope").string();
    expect_input_error(run_paft({"sparsity", missing}, tmp), {missing, "no such"});
    fs::create_directories(tmp / "empty");
    expect_input_error(run_paft({"sparsity", (tmp / "empty").string()}, tmp), {(tmp / "empty").string(), "neither"});
    spit(tmp / "file.txt", "x");
    expect_input_error(run_paft({"sparsity", (tmp / "file.txt").string()}, tmp), {"file.txt", "not a folder"});
    expect_input_error(run_paft({"sparsity", f.ft.string()}, tmp), {f.ft.string(), "--base"});
    expect_input_error(run_paft({"sparsity", f.sft.string(), "--threshold", "0"}, tmp), {"--threshold"});
    expect_input_error(run_paft({"sparsity", f.sft.string(), "--threshold=-1e-5"}, tmp), {"--threshold"});
    expect_input_error(run_paft({"sparsity", f.sft.string(), f.dpo.string(), "--labels", "a"}, tmp), {"--labels"});
    expect_input_error(run_paft({"sparsity", f.ft.string(), "--base", f.sft.string()}, tmp), {f.sft.string(), "base"});
    expect_usage_error(run_paft({"sparsity"}, tmp), {"paths"});

    // A model that lacks one of the base's tensors, and a base with another shape.
    auto model = Model::random(small_config(), 1);
    std::vector<TensorToWrite> tensors;
    for (const ParamEntry & e : model->layout().entries()) {
        if (e.name != "model.layers.1.mlp.up_proj.weight") {
            tensors.push_back({e.name, e.shape, model->data() + e.offset});
        }
    }
    fs::create_directories(tmp / "partial");
    write_safetensors((tmp / "partial" / "model.safetensors").string(), tensors);
    expect_input_error(run_paft({"sparsity", (tmp / "partial").string(), "--base", f.base.string()}, tmp),
                       {"model.layers.1.mlp.up_proj.weight", (tmp / "partial").string()});
    expect_input_error(run_paft({"sparsity", f.base.string(), "--base", (tmp / "partial").string()}, tmp),
                       {"model.layers.1.mlp.up_proj.weight"});
    ModelConfig other = small_config();
    other.vocab_size  = 41;
    Model::random(other, 1)->save((tmp / "other").string(), DType::F32);
    expect_input_error(run_paft({"sparsity", f.ft.string(), "--base", (tmp / "other").string()}, tmp),
                       {"lm_head.weight", "[41, 32]", "shape"});

    // Adapters: rank_pattern, a lora_A without its lora_B, a shape that is not rank r.
    fs::copy(f.sft, tmp / "pattern");
    json cfg            = json::parse(slurp(tmp / "pattern" / "adapter_config.json"));
    cfg["rank_pattern"] = {{"q_proj", 8}};
    spit(tmp / "pattern" / "adapter_config.json", cfg.dump());
    expect_input_error(run_paft({"sparsity", (tmp / "pattern").string()}, tmp), {"rank_pattern"});
    std::vector<float> a(2 * 8, 0.5f), b(4 * 3, 0.5f);
    fs::create_directories(tmp / "unpaired");
    spit(tmp / "unpaired" / "adapter_config.json", R"({"r": 2, "lora_alpha": 4})");
    write_safetensors((tmp / "unpaired" / "adapter_model.safetensors").string(),
                      {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {2, 8}, a.data()}});
    expect_input_error(run_paft({"sparsity", (tmp / "unpaired").string()}, tmp),
                       {"model.layers.0.self_attn.q_proj.lora_A.weight", "lora_B"});
    fs::create_directories(tmp / "rank");
    spit(tmp / "rank" / "adapter_config.json", R"({"r": 2, "lora_alpha": 4})");
    write_safetensors((tmp / "rank" / "adapter_model.safetensors").string(),
                      {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {2, 8}, a.data()},
                       {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", {4, 3}, b.data()}});
    expect_input_error(run_paft({"sparsity", (tmp / "rank").string()}, tmp), {"q_proj.lora_B.weight", "rank-2"});

    // The library checks the threshold too.
    expect_input_error([&] { adapter_sparsity(f.sft.string(), 0.0); }, {"threshold"});
    expect_input_error([&] { model_sparsity(f.ft.string(), f.base.string(), std::nan("")); }, {"threshold"});
}

TEST(SvgChart, EscapesAndChecksShapes) {
    EXPECT_EQ(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    EXPECT_EQ(xml_escape(std::string("x\x01y\xff", 4)), "xy\xEF\xBF\xBD");  // control dropped, bad byte -> U+FFFD
    Chart c;
    c.categories = {"a", "b"};
    c.series     = {{"s", {1.0}}};
    EXPECT_THROW(render_svg({c}), std::invalid_argument);
    c.series = {{"s", {1.0, std::nan("")}}};
    const std::string svg = render_svg({c});
    EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
    EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
    size_t bars = 0;
    for (size_t at = 0; (at = svg.find("class=\"bar\"", at)) != std::string::npos; at++) {
        bars++;
    }
    EXPECT_EQ(bars, 1u);  // no bar for the missing value
}
