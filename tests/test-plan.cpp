// paft run's memory plan (src/run/plan.h): the activation formula against the Transformer's own
// buffers, a training stage's parts against a hand calculation, the stages of the default recipe
// and of a real run, a base that cannot fit refused before anything is written, --plan running
// nothing, and the paper's recipe over a Mistral-7B-shaped configuration.
#include "cli_util.h"
#include "core/backend.h"
#include "core/random.h"
#include "io/safetensors.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/transformer.h"
#include "run/plan.h"
#include "run/run_recipe.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using namespace paft;

namespace {

const fs::path kSource = PAFT_SOURCE_DIR;

const MemoryPart & part(const StagePlan & s, const std::string & name) {
    for (const MemoryPart & p : s.parts) {
        if (p.name == name) return p;
    }
    static const MemoryPart none{"none", 0, ""};
    ADD_FAILURE() << s.stage << " has no part " << name;
    return none;
}

const StagePlan & stage(const std::vector<StagePlan> & plan, const std::string & name) {
    for (const StagePlan & s : plan) {
        if (s.stage == name) return s;
    }
    static const StagePlan none{"none", "", {}};
    ADD_FAILURE() << "no stage " << name;
    return none;
}

std::vector<std::string> names(const std::vector<StagePlan> & plan) {
    std::vector<std::string> out;
    for (const StagePlan & s : plan) out.push_back(s.stage);
    return out;
}

// A machine that runs everything on one thread (no worker gradient copies) and whose program
// takes nothing, so that a stage's parts are the model's alone.
MachineFacts one_thread_machine(uint64_t memory = 64'000'000'000ull) {
    MachineFacts m;
    m.memory_bytes = memory;
    m.threads = m.cores = 1;
    return m;
}

// Every stage of a run, in its order, for a recipe with these merges, pref method and export.
std::vector<std::string> expected_stages(bool synth, const std::string & pref, const std::vector<std::string> & merges,
                                         const std::vector<std::string> & exports) {
    std::vector<std::string> out;
    if (synth) out.push_back("synth");
    for (const std::string & t : {std::string("sft"), std::string("sft-sparse"), pref}) out.push_back("train/" + t);
    for (const char * variant : {"paft", "parallel"}) {
        for (const std::string & m : merges) out.push_back(std::string("merge/") + variant + "-" + m);
    }
    out.push_back("sequential/sft-" + pref);
    out.push_back("sequential/sft-sparse-" + pref);
    for (const char * variant : {"paft", "parallel"}) {
        for (const std::string & m : merges) out.push_back(std::string("eval/") + variant + "-" + m);
    }
    for (const std::string & row : {std::string("sequential-sft-sparse"), std::string("sequential-sft"),
                                    std::string("sft-sparse"), std::string("sft"), pref, std::string("base")}) {
        out.push_back("eval/" + row);
    }
    for (const std::string & e : exports) out.push_back("export/" + e);
    return out;
}

// The Mistral-7B-v0.1 config.json (mistralai/Mistral-7B-v0.1 on the Hub).
const char * kMistral7B = R"({
  "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
  "max_position_embeddings": 32768, "sliding_window": 4096, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "bos_token_id": 1, "eos_token_id": 2
})";

// The recipe of the hand calculation: small_test_config(2) under it, DPO, B 2 x T 16, LoRA r 4 on
// every projection, no dropout.
std::string small_recipe(const fs::path & dir, const std::string & extra) {
    return "output_dir: " + (dir / "out").string() + "\nmodel_name_or_path: " + (dir / "model").string() +
           "\nthreads: 1\nlora_r: 4\nlora_alpha: 8\nlora_dropout: 0.0\nlora_target_modules: all-linear\n"
           "per_device_train_batch_size: 2\nmax_length: 16\n" + extra +
           "sft:\n  train_data: s.jsonl\n  l1_lambda: 0.001\npreference:\n  method: dpo\n  train_data: p.jsonl\n"
           "evaluation:\n  tasks: [t.yaml]\n";
}

}  // namespace

// planned_activation_bytes is what activation_bytes() reports after a forward (fresh buffers).
TEST(PlanActivations, MatchTheTransformersBuffers) {
    const ModelConfig c     = small_test_config(3);
    auto              model = Model::random(c, 1);
    auto              backend = make_backend(1);
    Random            rng(2);
    for (const std::string & targets : {std::string(""), std::string("q_proj,v_proj"), std::string("all-linear")}) {
        for (float dropout : {0.0f, 0.1f}) {
            for (bool recompute : {false, true}) {
                for (auto [B, T] : {std::pair{1, 5}, std::pair{3, 7}}) {
                    std::vector<std::vector<int32_t>> rows(B, std::vector<int32_t>(T));
                    for (auto & row : rows) {
                        for (int32_t & id : row) id = (int32_t) (rng.next_u64() % c.vocab_size);
                    }
                    const Batch batch = batch_from_rows(rows, nullptr, 0, false, c.vocab_size);
                    LoraConfig lc = test_lora_config(targets.empty() ? "q_proj" : targets, 4, 8.0f);
                    lc.dropout    = dropout;
                    LoraAdapter         adapter(c, lc);
                    const LoraAdapter * a = targets.empty() ? nullptr : &adapter;  // none: the base alone
                    Transformer         t(*backend, model);
                    t.set_recompute(recompute);
                    t.set_training(true, 7, 0);
                    const std::vector<float> dlogp = mean_nll_gradient(batch);
                    t.forward_backward(batch, a, dlogp.data(), {a ? adapter.grads().data() : nullptr, nullptr});
                    const bool dropped = a && dropout > 0;
                    EXPECT_EQ(t.activation_bytes(),
                              Transformer::planned_activation_bytes(c, B, T, a ? &lc : nullptr, recompute, dropped))
                        << "targets '" << targets << "', dropout " << dropout << ", recompute " << recompute << ", "
                        << B << " x " << T;
                }
            }
        }
    }
}

// The parts of a training stage against a hand calculation for small_test_config(2): C 32, F 48,
// L 2, Hq 4, Hkv 2, D 8, V 40, so Q = 32, K = 16, S = Q + 2K = 64.
TEST(Plan, TrainingStageByHand) {
    const ModelConfig c = small_test_config(2);
    // Weights as stored in bf16: matrices embed and lm_head [40, 32] = 1280 values each; per layer
    // q [32, 32] 1024, k and v [16, 32] 512, o 1024, gate, up [48, 32] and down [32, 48] 1536:
    // 7680; 2 x 1280 + 2 x 7680 = 17920 values x 2 bytes = 35840. Vectors (f32): norm 32, per
    // layer two norms of 32: 160 floats = 640 bytes.
    EXPECT_EQ(planned_weight_bytes(c, DType::BF16, {}), 35840u + 640u);
    // NF4: each layer matrix as codes (values / 2) and an f32 absmax per 64 values: q 512 + 64,
    // k, v 256 + 32, o 576, gate, up, down 768 + 96: 4320 per layer, 8640; embed and head stay
    // bf16 (5120), vectors 640.
    LoadOptions nf4;
    nf4.quantization = Quantization::NF4;
    EXPECT_EQ(planned_weight_bytes(c, DType::BF16, nf4), 8640u + 5120u + 640u);

    const fs::path dir = fresh_test_folder("plan-hand");
    for (bool checkpointing : {false, true}) {
        spit(dir / "r.yaml", small_recipe(dir, checkpointing ? "gradient_checkpointing: true\n" : ""));
        const RunRecipe      recipe = read_run_recipe((dir / "r.yaml").string());
        const BaseModelFacts base   = BaseModelFacts::from_config((dir / "model").string(), c, DType::BF16);
        const RunPlan        plan   = plan_run(recipe, base, one_thread_machine());
        const StagePlan &    sft    = stage(plan.stages, "train/sft");
        const StagePlan &    dpo    = stage(plan.stages, "train/dpo");
        EXPECT_EQ(part(sft, "weights").bytes, 35840u + 640u);
        // LoRA r 4 on all seven: per layer r x (in + out) = 4 x (64 + 48 + 48 + 64 + 80 + 80 + 80) = 1856,
        // 3712 parameters; values, gradients and AdamW's two moments in f32: 4 x 4 bytes each.
        LoraAdapter adapter(c, recipe.train.sft.lora);
        ASSERT_EQ(adapter.params().size(), 3712u);
        EXPECT_EQ(part(sft, "adapter+optimizer").bytes, 4u * 4u * 3712u);
        // Activations of N = B x T = 2 x 16 = 32 tokens, in floats:
        //   kept whatever the layers: x_final, hf [N, C] 2048; rstdf, lse [N] 64; cos, sin [N, D/2] 256;
        //   layer inputs L x [N, C] 2048: 4416
        //   a layer: h1, x2, h2 [N, C] 3072; rstd1, rstd2 64; qkv [N, S] 2048; lse [N, Hq] 128;
        //   attn [N, Q] 1024; gate/up [N, 2F] and act [N, F] 4608; lora_h 7 x [N, r] 896: 11840
        // every layer's: 4416 + 2 x 11840 = 28096 floats; checkpointing, one layer's: 16256.
        const size_t sft_floats = checkpointing ? 16256 : 28096;
        EXPECT_EQ(part(sft, "activations").bytes, sft_floats * 4);
        // DPO: 2 pairs are 4 sequences, N = 64: twice every term.
        EXPECT_EQ(part(dpo, "activations").bytes, 2 * sft_floats * 4);
        // Evaluation: KV cache f32 of L x Hkv*D x 2 = 2 x 16 x 2 floats a position, for 8 generations
        // of 2048 tokens (the assumed context) = 16384 positions.
        EXPECT_EQ(part(stage(plan.stages, "eval/base"), "KV cache").bytes, 16384u * 2 * 16 * 2 * 4);
        EXPECT_TRUE(plan.fits());
        for (const StagePlan & s : plan.stages) EXPECT_GT(s.peak_bytes(), 0u) << s.stage;
    }
    // load_in_4bit: the same stage with NF4 weights.
    spit(dir / "r.yaml", small_recipe(dir, "load_in_4bit: true\n"));
    const RunPlan q = plan_run(read_run_recipe((dir / "r.yaml").string()),
                               BaseModelFacts::from_config((dir / "model").string(), c, DType::BF16),
                               one_thread_machine());
    EXPECT_EQ(part(stage(q.stages, "train/sft"), "weights").bytes, 8640u + 5120u + 640u);
    // The merged models stay in the stored dtype; the base rows load as the trainings did.
    EXPECT_EQ(part(stage(q.stages, "eval/paft-ties"), "weights").bytes, 35840u + 640u);
    EXPECT_EQ(part(stage(q.stages, "eval/sft"), "weights").bytes, 8640u + 5120u + 640u);
}

// The built-in default's plan: every stage the run would run, each with a positive estimate, all
// fitting (the default must never be refused).
TEST(Plan, DefaultRecipeListsEveryStage) {
    const fs::path dir    = fresh_test_folder("plan-default");
    RunRecipe      recipe = read_run_recipe((kSource / "recipes/paft-default.yaml").string(), (dir / "out").string());
    recipe.train.sft.model = recipe.train.preference.model = (kSource / "models/paft-tiny").string();
    const RunPlan plan = plan_run(recipe);
    EXPECT_EQ(names(plan.stages),
              expected_stages(true, "orpo", {"slerp", "task_arithmetic", "ties", "dare_ties", "linear"},
                              {"paft-ties-q8_0"}));
    for (const StagePlan & s : plan.stages) {
        EXPECT_GT(s.peak_bytes(), 0u) << s.stage;
        EXPECT_TRUE(plan.fits(s)) << s.stage;
    }
    // Trainings hold the base (f32, 0.94M parameters, in place) and activations; nothing is written.
    EXPECT_GT(part(stage(plan.stages, "train/sft"), "weights").bytes, 3'000'000u);
    EXPECT_GT(part(stage(plan.stages, "train/orpo"), "activations").bytes, 0u);
    EXPECT_FALSE(fs::exists(dir / "out"));
    std::printf("%s\n", plan.table().c_str());
}

// `paft run --plan` on a fitting recipe prints the plan and runs nothing; --plan-json writes it.
TEST(PlanCli, PlanRunsNothing) {
    const fs::path dir  = fresh_test_folder("plan-cli");
    std::string    yaml = slurp(kSource / "recipes/paft-default.yaml");
    const std::string key = "model_name_or_path: models/paft-tiny";
    ASSERT_NE(yaml.find(key), std::string::npos);
    yaml.replace(yaml.find(key), key.size(), "model_name_or_path: " + (kSource / "models/paft-tiny").string());
    spit(dir / "recipe.yaml", yaml);
    const RunResult r = run_paft({"run", (dir / "recipe.yaml").string(), "--out", (dir / "out").string(), "--plan",
                                  "--plan-json", (dir / "plan.json").string()},
                                 dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    for (const char * needle : {"| stage | loads | peak memory GB | fits? |", "| synth |", "| train/orpo |",
                                "| sequential/sft-sparse-orpo |", "| eval/base |", "| export/paft-ties-q8_0 |",
                                "physical memory"}) {
        EXPECT_NE(r.out.find(needle), std::string::npos) << needle << "\n" << r.out;
    }
    EXPECT_EQ(r.out.find("| NO |"), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(dir / "out")) << "--plan ran something";
    const ordered_json j = ordered_json::parse(slurp(dir / "plan.json"));
    EXPECT_TRUE(j["fits"].get<bool>());
    ASSERT_EQ(j["stages"].size(), 33u);
    EXPECT_EQ(j["stages"][0]["stage"], "synth");
    EXPECT_EQ(j["stages"][32]["stage"], "export/paft-ties-q8_0");
    EXPECT_GT(j["stages"][1]["peak_bytes"].get<uint64_t>(), 0u);

    expect_usage_error(run_paft({"run", (dir / "recipe.yaml").string(), "--plan-json", (dir / "p.json").string()}, dir),
                       {"--plan-json"});
}

// A base whose config.json describes a model far larger than any machine (1.7e12 parameters; the
// safetensors file holds one small tensor: the plan reads headers only) is refused by --plan and
// by the run itself, exit 1, naming the stages and what would help, with nothing written.
TEST(PlanCli, RefusesABaseThatCannotFit) {
    const fs::path dir = fresh_test_folder("plan-huge");
    fs::create_directories(dir / "huge");
    spit(dir / "huge" / "config.json",
         R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 16384,
             "intermediate_size": 65536, "num_hidden_layers": 400, "num_attention_heads": 128,
             "num_key_value_heads": 128, "vocab_size": 128000, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16"})");
    const std::vector<float> norm(16384, 1.0f);
    write_safetensors((dir / "huge" / "model.safetensors").string(), {{"model.norm.weight", {16384}, norm.data()}});
    spit(dir / "recipe.yaml", "output_dir: " + (dir / "out").string() + "\nmodel_name_or_path: " +
                                  (dir / "huge").string() +
                                  "\nsft:\n  train_data: s.jsonl\n  l1_lambda: 0.001\n"
                                  "preference:\n  train_data: p.jsonl\nevaluation:\n  tasks: [t.yaml]\n");
    for (bool plan_only : {true, false}) {
        std::vector<std::string> args = {"run", (dir / "recipe.yaml").string()};
        if (plan_only) args.push_back("--plan");
        const RunResult r = run_paft(args, dir);
        EXPECT_EQ(r.code, 1) << describe(r);
        for (const char * needle : {"paft: error: ", "cannot fit in this machine's memory", "train/sft", "eval/base",
                                    "load_in_4bit: true", "--plan"}) {
            EXPECT_NE(r.err.find(needle), std::string::npos) << needle << "\n" << describe(r);
        }
        if (plan_only) {
            EXPECT_NE(r.out.find("| NO |"), std::string::npos) << r.out;
        } else {
            EXPECT_EQ(r.out, "");
        }
        EXPECT_FALSE(fs::exists(dir / "out")) << "something was written";
    }
}

// The stages a real run records are the plan's, in the same order (a reduced recipe: a small
// world, a base pre-trained for a few steps, one merge method, one export).
TEST(PlanCli, StagesAreTheRunsStages) {
    const fs::path dir   = fresh_test_folder("plan-run");
    const fs::path world = dir / "world";
    RunResult      r     = run_paft({"synth", "--out", world.string(), "--seed", "5", "--people", "8",
                                     "--heldout-people", "3", "--corpus-docs", "120", "--sft-examples", "16",
                                     "--pref-examples", "16", "--judge-prompts", "2", "--vocab-size", "300"},
                                    dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    r = run_paft({"pretrain", "--data", (world / "corpus.jsonl").string(), "--tokenizer",
                  (world / "tokenizer").string(), "--out", (dir / "base").string(), "--preset", "paft-tiny",
                  "--seq-len", "32", "--batch-size", "4", "--max-steps", "1", "--threads", "2"},
                 dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    const std::string recipe =
        "output_dir: " + (dir / "run").string() + "\nmodel_name_or_path: " + (dir / "base").string() +
        "\nthreads: 2\nlora_r: 2\nlora_alpha: 4\nmax_steps: 1\nper_device_train_batch_size: 4\nmax_length: 64\n"
        "logging_steps: 1\nsave_steps: 0\ngradient_checkpointing: true\n"
        "sft:\n  train_data: " + (world / "sft.jsonl").string() + "\n  l1_lambda: 1.0e-3\n"
        "preference:\n  method: dpo\n  train_data: " + (world / "prefs.jsonl").string() + "\n"
        "merges:\n  - {method: ties, densities: [0.5, 0.5]}\n"
        "evaluation:\n  tasks: [" + (world / "tasks/world_sums.yaml").string() + "]\n  limit: 2\n  winrate: " +
        (world / "judge.jsonl").string() + "\n  max_new_tokens: 4\n"
        "export:\n  types: [q8_0]\n  rows: [sft]\n";
    spit(dir / "recipe.yaml", recipe);
    r = run_paft({"run", (dir / "recipe.yaml").string()}, dir);
    ASSERT_EQ(r.code, 0) << describe(r);

    const ordered_json results = ordered_json::parse(slurp(dir / "run" / "results.json"));
    std::vector<std::string> recorded;
    for (const auto & s : results["stages"]) recorded.push_back(s["stage"]);
    const std::vector<StagePlan> plan = plan_stages(read_run_recipe((dir / "recipe.yaml").string()));
    EXPECT_EQ(names(plan), recorded);
    EXPECT_EQ(recorded, expected_stages(false, "dpo", {"ties"}, {"sft-q8_0"}));
    // Each stage's estimate next to its measured peak, for the record.
    for (size_t i = 0; i < plan.size() && i < results["stages"].size(); i++) {
        std::printf("%-28s planned %8.1f MB  measured %8.1f MB\n", plan[i].stage.c_str(), plan[i].peak_bytes() / 1e6,
                    results["stages"][i]["peak_memory_bytes"].get<uint64_t>() / 1e6);
    }
}

// The paper's recipe over a Mistral-7B-shaped base (the config alone: its 14.5 GB of weights need
// not be here). With batch 1 x 256 tokens and gradient checkpointing, a training stage fits in
// about 6.5 GB with load_in_4bit and 17 GB in bf16; the plan of the recipe as written is printed.
TEST(Plan, Mistral7B) {
    const ModelConfig    c    = parse_model_config(kMistral7B, "Mistral-7B-v0.1/config.json");
    const BaseModelFacts base = BaseModelFacts::from_config("PATH/TO/Mistral-7B-v0.1", c, DType::BF16);
    // bf16 as stored: 7.24e9 parameters x 2 bytes.
    EXPECT_NEAR((double) base.weight_bytes({}), 14.48e9, 0.01e9);
    const fs::path dir = fresh_test_folder("plan-7b");
    // This machine, with the threads a fresh `paft run` gets for `threads: 0` (a backend made by
    // an earlier test may have set OpenMP's).
    MachineFacts machine = MachineFacts::this_machine();
    machine.threads      = machine.cores;
    for (bool four_bit : {true, false}) {
        RunRecipe recipe = read_run_recipe((kSource / "recipes/paft-mistral-7b.yaml").string(), (dir / "out").string());
        for (TrainOptions * o : {&recipe.train.sft, &recipe.train.preference}) {
            o->per_device_train_batch_size = 1;
            o->data.max_length             = 256;
            o->gradient_checkpointing      = true;
            o->load_in_4bit                = four_bit;
        }
        // One worker (threads: 1): with more, a pair's two sequences split over two workers, each
        // with its own gradient buffer and logits chunk (about 0.4 GB more at 7B).
        const RunPlan plan  = plan_run(recipe, base, one_thread_machine(machine.memory_bytes));
        const double  limit = four_bit ? 6.5e9 : 17e9;
        for (const char * name : {"train/sft", "train/sft-sparse", "train/dpo", "sequential/sft-dpo"}) {
            const StagePlan & s = stage(plan.stages, name);
            EXPECT_LT((double) s.peak_bytes(), limit) << name << (four_bit ? " nf4" : " bf16");
            EXPECT_GT((double) s.peak_bytes(), four_bit ? 4e9 : 14.5e9) << name;
            std::printf("%s, %s, batch 1 x 256, checkpointing, one worker: %.2f GB\n", name,
                        four_bit ? "load_in_4bit" : "bf16", s.peak_bytes() / 1e9);
        }
    }
    const RunRecipe as_written =
        read_run_recipe((kSource / "recipes/paft-mistral-7b.yaml").string(), (dir / "out").string());
    const RunPlan plan = plan_run(as_written, base, machine);
    std::printf("%s\n%s\n", plan.table().c_str(), plan.refusal().c_str());
}
