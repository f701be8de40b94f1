// paft merge end to end: mergekit YAML reading and parameter evaluation (hand-computed values),
// adapters merged as "base+adapter" giving the same weights as the full models made by applying
// each adapter, gradients and filters reaching each tensor (task arithmetic computed by hand),
// shards, dtypes and side files, thread-count independence, validation before any work, and a
// SIGKILLed merge leaving nothing that looks complete. The per-tensor math of every method is
// checked against the PyTorch oracle in test-merge-methods.
#include "core/error.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "merge/config.h"
#include "merge/merge.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/presets.h"
#include "core/random.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

using namespace paft;
namespace fs = std::filesystem;

namespace {

// A base whose weights are multiples of 1/64 in [-1, 1], and adapters whose factors are k/8
// (|k| <= 8) with scale 2: every s * B * A is a multiple of 1/32 and every base + s * B * A is
// exact in f32, so a full model made by applying an adapter has exactly the adapter's delta.
std::shared_ptr<Model> dyadic_base(uint64_t seed) {
    auto   model = Model::random(small_test_config(3), seed);
    Random rng(seed);
    for (size_t i = 0; i < model->size(); i++) {
        model->data()[i] = (float) ((int) (rng.next_u64() % 129) - 64) / 64.0f;
    }
    return model;
}

LoraAdapter dyadic_adapter(const std::string & targets, uint64_t seed) {
    LoraAdapter a(small_test_config(3), test_lora_config(targets, 4, 8.0f));
    Random      rng(seed);
    for (float & p : a.params()) {
        p = (float) ((int) (rng.next_u64() % 17) - 8) / 8.0f;
    }
    return a;
}

std::map<std::string, std::vector<float>> read_all(const fs::path & dir) {
    const TensorStore                         store = TensorStore::open_dir(dir.string());
    std::map<std::string, std::vector<float>> out;
    for (const std::string & name : store.names()) {
        out[name] = store.read_f32_any(name, nullptr);
    }
    return out;
}

// A folder with a base model (plus tokenizer files), two adapters over it and the two full
// models made by applying each adapter.
class MergeEngine : public ::testing::Test {
protected:
    void SetUp() override {
        dir = fresh_test_folder("paft-merge-engine");
        auto base = dyadic_base(5);
        base->save((dir / "base").string(), DType::F32);
        spit(dir / "base" / "tokenizer.json", "{\"version\": \"1.0\"}\n");
        spit(dir / "base" / "tokenizer_config.json", "{\"eos_token\": \"</s>\"}\n");
        const std::vector<LoraAdapter> adapters = {dyadic_adapter("q_proj,v_proj,o_proj,gate_proj,down_proj", 21),
                                                   dyadic_adapter("q_proj,k_proj,up_proj,down_proj", 22)};
        for (size_t i = 0; i < adapters.size(); i++) {
            const std::string name = "adapter" + std::to_string(i);
            adapters[i].save((dir / name).string(), (dir / "base").string());
            auto full = Model::random(small_test_config(3), 1);
            std::copy(base->data(), base->data() + base->size(), full->data());
            fold_lora_adapter(*full, adapters[i]);
            full->save((dir / ("full" + std::to_string(i))).string(), DType::F32);
        }
    }

    RunResult merge(std::vector<std::string> args) { return run_paft(args, dir); }

    // Writes a YAML config and returns its path.
    std::string config(const std::string & name, const std::string & text) {
        spit(dir / name, text);
        return (dir / name).string();
    }

    fs::path dir;
};

void expect_same_tensors(const fs::path & a, const fs::path & b, const std::string & what) {
    const auto ta = read_all(a), tb = read_all(b);
    ASSERT_EQ(ta.size(), tb.size()) << what;
    for (const auto & [name, values] : ta) {
        ASSERT_TRUE(tb.count(name)) << what << ": " << name;
        EXPECT_TRUE(values == tb.at(name)) << what << ": tensor " << name << " differs";
    }
}

// True once the merge's writer has created its shard files.
bool has_shards(const fs::path & dir) {
    std::error_code ec;
    for (const auto & entry : fs::directory_iterator(dir, ec)) {
        if (entry.path().filename().string().rfind("model-", 0) == 0) return true;
    }
    return false;
}

}  // namespace

TEST(MergeConfig, EvaluatesGradientsAndFiltersAsMergekitDoes) {
    const fs::path dir = fresh_test_folder("paft-merge-config");
    spit(dir / "c.yaml", R"(models:
  - model: a
    parameters:
      density: [1, 0.7, 0.1]
      weight:
        - filter: mlp
          value: 0.5
        - filter: self_attn
          value: [0, 1]
        - value: 2
  - model: b+c
    parameters:
      weight:
        - filter: down_proj
          value: 3
merge_method: ties
base_model: base
parameters:
  normalize: true
  lambda: 0.9
dtype: bfloat16
)");
    const MergeConfig c = read_merge_config((dir / "c.yaml").string());
    ASSERT_EQ(c.models.size(), 2u);
    EXPECT_EQ(c.method, "ties");
    EXPECT_EQ(c.base->model, "base");
    EXPECT_EQ(c.models[1].ref.model, "b");
    EXPECT_EQ(c.models[1].ref.adapter, "c");
    EXPECT_EQ(c.dtype, "bfloat16");
    const ParamSetting & density = c.models[0].parameters.at("density");
    // (1 - frac) * g[i0] + frac * g[i1] at t * (len - 1), by hand:
    EXPECT_DOUBLE_EQ(evaluate_setting(density, "x", 0.0)->number, 1.0);
    EXPECT_DOUBLE_EQ(evaluate_setting(density, "x", 0.25)->number, 0.85);
    EXPECT_DOUBLE_EQ(evaluate_setting(density, "x", 0.5)->number, 0.7);
    EXPECT_DOUBLE_EQ(evaluate_setting(density, "x", 0.75)->number, 0.4);
    EXPECT_DOUBLE_EQ(evaluate_setting(density, "x", 1.0)->number, 0.1);
    const ParamSetting & weight = c.models[0].parameters.at("weight");
    EXPECT_DOUBLE_EQ(evaluate_setting(weight, "model.layers.1.mlp.up_proj.weight", 0.5)->number, 0.5);
    EXPECT_DOUBLE_EQ(evaluate_setting(weight, "model.layers.1.self_attn.q_proj.weight", 0.5)->number, 0.5);
    EXPECT_DOUBLE_EQ(evaluate_setting(weight, "model.layers.2.self_attn.q_proj.weight", 1.0)->number, 1.0);
    EXPECT_DOUBLE_EQ(evaluate_setting(weight, "model.norm.weight", 1.0)->number, 2.0);
    // No condition matches: not set here (the global value or the default applies).
    EXPECT_FALSE(evaluate_setting(c.models[1].parameters.at("weight"), "model.norm.weight", 1.0).has_value());
    EXPECT_TRUE(c.parameters.at("normalize").scalar.boolean);

    // The YAML paft writes next to a merge reads back to the same settings.
    spit(dir / "again.yaml", merge_config_yaml(c));
    const MergeConfig again = read_merge_config((dir / "again.yaml").string());
    EXPECT_EQ(merge_config_yaml(again), merge_config_yaml(c));
    EXPECT_DOUBLE_EQ(evaluate_setting(again.models[0].parameters.at("density"), "x", 0.25)->number, 0.85);
}

TEST(MergeConfig, RefusesWhatItDoesNotSupportNamingTheLine) {
    const fs::path dir = fresh_test_folder("paft-merge-config");
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {"models:\n  - model: a\nmerge_metod: ties\n", {"c.yaml:3", "unknown key 'merge_metod'", "merge_method"}},
        {"slices:\n  - sources: []\nmerge_method: ties\n", {"c.yaml:1", "slices"}},
        {"models:\n  - model: a\nmerge_method: ties\ntokenizer_source: union\n", {"c.yaml:4", "union"}},
        {"models:\n  - model: a\n    parameters:\n      density: [1, x]\nmerge_method: ties\n",
         {"c.yaml:4", "density", "gradient"}},
        {"models:\n  - model: a\n    parameters:\n      weight:\n        - filter: mlp\n          valeu: 1\n"
         "merge_method: ties\n",
         {"c.yaml:6", "valeu"}},
        {"models:\n  - parameters: {weight: 1}\nmerge_method: ties\n", {"c.yaml:2", "model: PATH"}},
        {"models:\n  - model: a\n", {"c.yaml", "merge_method is missing"}},
        {"merge_method: ties\nmodels: [\n", {"c.yaml", "not valid YAML"}},
    };
    for (const auto & [text, needles] : cases) {
        spit(dir / "c.yaml", text);
        try {
            read_merge_config((dir / "c.yaml").string());
            ADD_FAILURE() << "accepted:\n" << text;
        } catch (const InputError & e) {
            for (const std::string & needle : needles) {
                EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what() << "\nlacks " << needle;
            }
        }
    }
}

// Each method merging "base+adapter" inputs gives, bit for bit, what it gives on the full models
// made by applying the adapters (mergekit's own route: merge_and_unload, then merge).
TEST_F(MergeEngine, AdaptersGiveTheWeightsOfTheFullModelsTheyMake) {
    const std::string base = (dir / "base").string();
    struct Method {
        std::string              name;
        std::vector<std::string> weights, densities;  // per model ("" = not given)
        std::string              global;              // NAME=VALUE, or ""
    };
    const std::vector<Method> methods = {
        {"linear", {"0.75", "0.25"}, {"", ""}, ""},
        {"task_arithmetic", {"1", "0.5"}, {"", ""}, "lambda=0.8"},
        {"ties", {"1", "0.5"}, {"0.5", "0.5"}, ""},
        {"dare_ties", {"1", "1"}, {"0.6", "0.6"}, ""},
        {"dare_linear", {"1", "1"}, {"0.6", "0.6"}, ""},
        {"breadcrumbs_ties", {"1", "1"}, {"0.7", "0.7"}, ""},
        {"della", {"1", "1"}, {"0.5", "0.5"}, ""},
        {"slerp", {""}, {""}, "t=0.3"},
        {"model_stock", {"", ""}, {"", ""}, ""},
    };
    for (const Method & m : methods) {
        SCOPED_TRACE(m.name);
        // The short form over "base+adapter" inputs ...
        std::vector<std::string> args = {"merge", "--base", base, "--method", m.name, "--out",
                                         (dir / ("lora-" + m.name)).string(), "--threads", "2"};
        std::string weights, densities;
        for (size_t i = 0; i < m.weights.size(); i++) {
            args.insert(args.end(), {"--adapter", (dir / ("adapter" + std::to_string(i))).string()});
            weights += (i ? "," : "") + m.weights[i];
            densities += (i ? "," : "") + m.densities[i];
        }
        if (!m.weights[0].empty()) args.insert(args.end(), {"--weight", weights});
        if (!m.densities[0].empty()) args.insert(args.end(), {"--density", densities});
        if (!m.global.empty()) args.insert(args.end(), {"--param", m.global});
        RunResult r = merge(args);
        ASSERT_EQ(r.code, 0) << describe(r);

        // ... and mergekit YAML over the full models.
        std::string yaml = "merge_method: " + m.name + "\nbase_model: " + base + "\nmodels:\n";
        for (size_t i = 0; i < m.weights.size(); i++) {
            yaml += "  - model: " + (dir / ("full" + std::to_string(i))).string() + "\n    parameters: {";
            if (!m.weights[i].empty()) yaml += "weight: " + m.weights[i];
            if (!m.densities[i].empty()) yaml += ", density: " + m.densities[i];
            yaml += "}\n";
        }
        if (!m.global.empty()) {
            const size_t eq = m.global.find('=');
            yaml += "parameters:\n  " + m.global.substr(0, eq) + ": " + m.global.substr(eq + 1) + "\n";
        }
        const std::string path = config(m.name + ".yaml", yaml);
        r = merge({"merge", path, "--out", (dir / ("full-" + m.name)).string(), "--threads", "2"});
        ASSERT_EQ(r.code, 0) << describe(r);
        expect_same_tensors(dir / ("lora-" + m.name), dir / ("full-" + m.name), m.name);
    }
}

// A base given as MODEL+ADAPTER (mergekit's base+lora): PAFT's SLERP from the SFT model to the
// preference model, over adapters, equals the same over the full models.
TEST_F(MergeEngine, BaseWithAnAdapterEqualsItsFullModel) {
    const std::string base = (dir / "base").string(), a0 = (dir / "adapter0").string(),
                      a1 = (dir / "adapter1").string();
    for (const std::string method : {"slerp", "ties"}) {
        const std::string params = method == "slerp" ? "parameters: {t: 0.4}\n" : "parameters: {density: 0.5, weight: 1}\n";
        const std::string over_adapters = config(method + "-a.yaml", "merge_method: " + method + "\nbase_model: " + base +
                                                                         "+" + a0 + "\nmodels:\n  - model: " + base +
                                                                         "+" + a1 + "\n" + params);
        const std::string over_models = config(method + "-m.yaml", "merge_method: " + method + "\nbase_model: " +
                                                                       (dir / "full0").string() + "\nmodels:\n  - model: " +
                                                                       (dir / "full1").string() + "\n" + params);
        RunResult r = merge({"merge", over_adapters, "--out", (dir / (method + "-a")).string()});
        ASSERT_EQ(r.code, 0) << describe(r);
        r = merge({"merge", over_models, "--out", (dir / (method + "-m")).string()});
        ASSERT_EQ(r.code, 0) << describe(r);
        expect_same_tensors(dir / (method + "-a"), dir / (method + "-m"), method);
    }
    // paft parallel's merge options with slerp mean exactly that.
    MergeOptions o;
    o.method = "slerp";
    o.t      = 0.4;
    MergeRunOptions run;
    run.out = (dir / "options").string();
    run_merge(adapter_merge_config(base, {a0, a1}, o), run);
    expect_same_tensors(dir / "options", dir / "slerp-m", "MergeOptions slerp");
}

// Gradients and filters are evaluated per tensor: task arithmetic with a per-layer lambda and
// per-module weights, against base + lambda(t) * sum_i w_i(name) * delta_i computed here.
TEST_F(MergeEngine, GradientsAndFiltersReachEveryTensor) {
    const std::string base = (dir / "base").string();
    const std::string path = config("ta.yaml", "merge_method: task_arithmetic\nbase_model: " + base +
                                                   "\nmodels:\n  - model: " + (dir / "full0").string() +
                                                   "\n    parameters:\n      weight:\n        - filter: mlp\n"
                                                   "          value: 0.5\n        - value: 2\n  - model: " +
                                                   (dir / "full1").string() +
                                                   "\n    parameters:\n      weight: [1, 3]\nparameters:\n"
                                                   "  lambda: [0.5, 1.5]\n");
    RunResult r = merge({"merge", path, "--out", (dir / "out").string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    const auto got = read_all(dir / "out"), b = read_all(dir / "base"), f0 = read_all(dir / "full0"),
               f1 = read_all(dir / "full1");
    // 3 layers: t = 0, 0.5, 1; embeddings at 0, the final norm and head at 1.
    auto position = [](const std::string & name) {
        if (name.rfind("model.layers.", 0) == 0) return std::stoi(name.substr(13)) / 2.0;
        return name.find("embed") != std::string::npos ? 0.0 : 1.0;
    };
    for (const auto & [name, values] : got) {
        const double t      = position(name);
        const double lambda = 0.5 + t;                    // gradient [0.5, 1.5]
        const double w0     = name.find("mlp") != std::string::npos ? 0.5 : 2.0;
        const double w1     = 1.0 + 2.0 * t;              // gradient [1, 3]
        for (size_t j = 0; j < values.size(); j++) {
            const double base_j = b.at(name)[j];
            const double want   = base_j + lambda * (w0 * (f0.at(name)[j] - base_j) + w1 * (f1.at(name)[j] - base_j));
            ASSERT_NEAR(values[j], want, 1e-6 * std::max(1.0, std::fabs(want))) << name << "[" << j << "]";
        }
    }
}

TEST_F(MergeEngine, ShardsDtypesAndSideFiles) {
    const std::string              base   = (dir / "base").string();
    const std::vector<std::string> inputs = {"--base",    base, "--adapter", (dir / "adapter0").string(),
                                             "--adapter", (dir / "adapter1").string(), "--density", "0.5"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = {"merge"};
        args.insert(args.end(), inputs.begin(), inputs.end());
        args.insert(args.end(), extra.begin(), extra.end());
        return merge(args);
    };
    RunResult r = with({"--out", (dir / "one").string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_TRUE(fs::exists(dir / "one" / "model.safetensors"));
    EXPECT_FALSE(fs::exists(dir / "one" / "model.safetensors.index.json"));

    r = with({"--out", (dir / "sharded").string(), "--shard-size", "20K"});
    ASSERT_EQ(r.code, 0) << describe(r);
    const nlohmann::json index = nlohmann::json::parse(slurp(dir / "sharded" / "model.safetensors.index.json"));
    EXPECT_GT(fs::file_size(dir / "one" / "model.safetensors"), 60000u);
    EXPECT_GE(index["weight_map"].size(), 30u);
    std::set<std::string> shards;
    for (const auto & item : index["weight_map"].items()) shards.insert(item.value().get<std::string>());
    EXPECT_GE(shards.size(), 3u);
    expect_same_tensors(dir / "one", dir / "sharded", "sharded");

    // bf16 output: the f32 result rounded to nearest even.
    r = with({"--out", (dir / "bf16").string(), "--out-dtype", "bfloat16"});
    ASSERT_EQ(r.code, 0) << describe(r);
    const auto f32 = read_all(dir / "one"), bf16 = read_all(dir / "bf16");
    for (const auto & [name, values] : f32) {
        for (size_t j = 0; j < values.size(); j++) {
            ASSERT_EQ(bf16.at(name)[j], bf16_to_f32(f32_to_bf16(values[j]))) << name;
        }
    }
    const TensorStore store = TensorStore::open_dir((dir / "bf16").string());
    EXPECT_EQ(store.info("model.layers.0.self_attn.q_proj.weight").dtype, DType::BF16);
    EXPECT_EQ(nlohmann::json::parse(slurp(dir / "bf16" / "config.json"))["torch_dtype"], "bfloat16");
    EXPECT_EQ(slurp(dir / "bf16" / "tokenizer.json"), slurp(dir / "base" / "tokenizer.json"));
    EXPECT_EQ(slurp(dir / "bf16" / "tokenizer_config.json"), slurp(dir / "base" / "tokenizer_config.json"));
    const MergeConfig written = read_merge_config((dir / "bf16" / "mergekit_config.yml").string());
    EXPECT_EQ(written.method, "ties");
    ASSERT_EQ(written.models.size(), 2u);
    EXPECT_EQ(written.models[1].ref.adapter, (dir / "adapter1").string());

    // Tensors no adapter touches are the base's, byte for byte.
    const TensorStore out = TensorStore::open_dir((dir / "one").string());
    const TensorStore in  = TensorStore::open_dir(base);
    for (const char * name : {"model.embed_tokens.weight", "model.norm.weight", "model.layers.1.input_layernorm.weight"}) {
        const auto a = out.bytes(name), b = in.bytes(name);
        EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << name;
    }
}

TEST_F(MergeEngine, ThreadCountDoesNotChangeTheResult) {
    const std::string base = (dir / "base").string();
    for (const char * threads : {"1", "3"}) {
        RunResult r = merge({"merge", "--base", base, "--adapter", (dir / "adapter0").string(), "--model",
                             (dir / "full1").string(), "--method", "dare_ties", "--density", "0.4", "--seed", "7",
                             "--threads", threads, "--out", (dir / (std::string("t") + threads)).string()});
        ASSERT_EQ(r.code, 0) << describe(r);
    }
    EXPECT_TRUE(slurp(dir / "t1" / "model.safetensors") == slurp(dir / "t3" / "model.safetensors"));
}

// The merged delta written back as a LoRA adapter: task arithmetic of two rank-4 adapters is a
// rank <= 8 delta, so rank 8 reproduces the merged model and rank 2 keeps less of the energy.
TEST_F(MergeEngine, LoraOutputHoldsTheMergedDelta) {
    const std::string base = (dir / "base").string();
    const std::vector<std::string> inputs = {"merge", "--base", base, "--adapter", (dir / "adapter0").string(),
                                             "--adapter", (dir / "adapter1").string(), "--method", "task_arithmetic"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = inputs;
        args.insert(args.end(), extra.begin(), extra.end());
        return merge(args);
    };
    RunResult r = with({"--out", (dir / "model").string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    r = with({"--out", (dir / "r8").string(), "--out-format", "lora", "--rank", "8"});
    ASSERT_EQ(r.code, 0) << describe(r);
    r = with({"--out", (dir / "r2").string(), "--out-format", "lora", "--rank", "2"});
    ASSERT_EQ(r.code, 0) << describe(r);

    const ModelConfig c      = small_test_config(3);
    const LoraAdapter a8     = LoraAdapter::load((dir / "r8").string(), c);
    const auto        merged = read_all(dir / "model"), b = read_all(dir / "base");
    EXPECT_FLOAT_EQ(a8.config().scale(), 1.0f);
    auto model = Model::load_f32(base);
    fold_lora_adapter(*model, a8);
    for (const ParamEntry & e : model->layout().entries()) {
        const std::vector<float> & want = merged.at(e.name);
        for (size_t j = 0; j < want.size(); j++) {
            ASSERT_NEAR(model->data()[e.offset + j], want[j], 2e-5 * std::max(1.0f, std::fabs(want[j]))) << e.name;
        }
    }
    // The retained energy per module (lora_extraction.json).
    auto retained = [&](const char * run, const std::string & module) {
        const nlohmann::json report = nlohmann::json::parse(slurp(dir / run / "lora_extraction.json"));
        for (const nlohmann::json & m : report["modules"]) {
            if (m["module"] == module) return m["retained"].get<double>();
        }
        ADD_FAILURE() << module << " not in " << run << "/lora_extraction.json";
        return -1.0;
    };
    const std::string q = "model.layers.0.self_attn.q_proj";  // both adapters: rank 8
    EXPECT_NEAR(retained("r8", q), 1.0, 1e-9);
    EXPECT_LT(retained("r2", q), 0.95);
    EXPECT_GT(retained("r2", q), 0.2);
}

TEST_F(MergeEngine, RefusesBadInputBeforeWritingAnything) {
    const std::string base = (dir / "base").string(), a0 = (dir / "adapter0").string();
    ModelConfig wider = small_test_config(3);
    wider.hidden_size = 40;
    wider.head_dim    = 10;
    Model::random(wider, 3)->save((dir / "other").string(), DType::F32);
    const std::string out = (dir / "out").string();
    const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> cases = {
        {{"--base", (dir / "missing").string(), "--adapter", a0}, {"missing", "not a directory"}},
        {{"--base", base, "--adapter", (dir / "missing").string()}, {"missing", "not a directory"}},
        {{"--base", base, "--adapter", base}, {"adapter_config.json"}},
        {{"--base", base, "--model", (dir / "other").string()}, {"hidden_size", "40"}},
        {{"--base", base, "--adapter", a0, "--method", "tie"}, {"unknown method 'tie'", "ties"}},
        {{"--base", base, "--adapter", a0, "--density", "1.5"}, {"density", "1.5"}},
        {{"--base", base, "--adapter", a0, "--density", "0"}, {"density"}},
        {{"--base", base, "--adapter", a0, "--param", "lamda=2"}, {"lamda", "lambda"}},
        {{"--base", base, "--adapter", a0, "--method", "slerp", "--adapter", (dir / "adapter1").string(), "--param",
          "t=0.5"},
         {"slerp", "1 model"}},
        {{"--base", base, "--adapter", a0, "--method", "slerp"}, {"t"}},
        {{"--base", base, "--adapter", a0, "--weight", "1,2"}, {"--weight", "2 values for 1 models"}},
        {{"--base", base, "--adapter", a0, "--out-format", "lora"}, {"--rank"}},
        {{"--base", base, "--adapter", a0, "--out-dtype", "int8"}, {"int8"}},
        {{"--base", base, "--adapter", a0, "--tokenizer-source", (dir / "missing").string()}, {"tokenizer_source"}},
        {{"--adapter", a0}, {"--base"}},
    };
    for (const auto & [flags, needles] : cases) {
        std::vector<std::string> args = {"merge", "--out", out};
        args.insert(args.end(), flags.begin(), flags.end());
        SCOPED_TRACE(testing::PrintToString(flags));
        expect_input_error(merge(args), needles);
        EXPECT_FALSE(fs::exists(out));
        EXPECT_FALSE(fs::exists(dir / ".out.paft-partial"));
    }
    // A parameter a model sets that is global, and a model missing a tensor, named in the YAML.
    const std::string yaml = config("bad.yaml", "merge_method: ties\nbase_model: " + base + "\nmodels:\n  - model: " +
                                                    (dir / "full0").string() +
                                                    "\n    parameters:\n      lambda: 2\n");
    expect_input_error(merge({"merge", yaml, "--out", out}), {"bad.yaml:6", "lambda", "global"});
    fs::create_directories(dir / "partial-model");
    auto base_model = Model::load_f32(base);
    std::vector<TensorToWrite> some;
    for (const ParamEntry & e : base_model->layout().entries()) {
        if (e.name != "model.norm.weight") some.push_back({e.name, e.shape, base_model->data() + e.offset, DType::F32});
    }
    write_safetensors((dir / "partial-model" / "model.safetensors").string(), some);
    fs::copy_file(dir / "base" / "config.json", dir / "partial-model" / "config.json");
    expect_input_error(merge({"merge", "--base", base, "--model", (dir / "partial-model").string(), "--out", out}),
                       {"model.norm.weight", "partial-model"});
    // An existing output is not replaced unless asked.
    fs::create_directories(out);
    expect_input_error(merge({"merge", "--base", base, "--adapter", a0, "--out", out}), {"already exists"});
    EXPECT_EQ(merge({"merge", "--base", base, "--adapter", a0, "--out", out, "--overwrite"}).code, 0);
}

// A merge killed with SIGKILL leaves no output directory (only its partial folder, which the next
// run removes); the next run completes.
TEST(MergeKill, KilledMergeLeavesNoOutputThatLooksComplete) {
    const fs::path dir  = fresh_test_folder("paft-merge-kill");
    auto           base = Model::random(model_preset("llama-20m"), 3);
    base->save((dir / "base").string(), DType::F32);
    for (int i = 0; i < 2; i++) {
        auto other = Model::random(model_preset("llama-20m"), 10 + i);
        other->save((dir / ("m" + std::to_string(i))).string(), DType::F32);
    }
    const fs::path                 out  = dir / "out", partial = dir / ".out.paft-partial";
    const std::vector<std::string> args = {"merge", "--base", (dir / "base").string(), "--model", (dir / "m0").string(),
                                           "--model", (dir / "m1").string(), "--density", "0.3", "--threads", "1",
                                           "--shard-size", "10M", "--out", out.string()};
    for (int attempt = 0; attempt < 3; attempt++) {
        const pid_t pid    = spawn_paft(args, dir / "killed.log");
        int         status = 0;
        bool        exited = false;
        // Wait until the writer has created its shards, then a little more.
        while (!has_shards(partial) && !exited) {
            exited = waitpid(pid, &status, WNOHANG) == pid;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        ASSERT_FALSE(exited) << "the merge ended before it could be killed: " << slurp(dir / "killed.log");
        std::this_thread::sleep_for(std::chrono::milliseconds(50 * attempt));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "not killed: status " << status;
        EXPECT_FALSE(fs::exists(out)) << "attempt " << attempt;
    }
    RunResult r = run_paft(args, dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_NE(r.err.find("interrupted"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(partial));
}
