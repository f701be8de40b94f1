// Evaluation and generation across MPI ranks (`mpirun -np N paft eval|generate --data`): the
// results JSON, the logged samples, the table and the generated records are byte for byte those
// of one process with the threads of one rank; a run resumes across ranks; bad input on one rank
// alone stops the job with exit 2 and that rank's message. Skipped when this build has no MPI or
// mpirun is missing.
#include "core/communicator.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

const std::string kModel = std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny";  // a trained tiny model
const std::string kData  = std::string(PAFT_SOURCE_DIR) + "/tests/data/eval";

class MpiEval : public ::testing::Test {
protected:
    fs::path dir;

    void SetUp() override {
        if (!paft::mpi_available() || !have_mpirun()) {
            GTEST_SKIP() << "this build has no MPI, or mpirun is missing";
        }
        dir = fresh_test_folder("paft-mpi-eval");
    }
    void TearDown() override {
        if (!dir.empty()) {
            fs::remove_all(dir);
        }
    }

    // Log-likelihood tasks with few-shot contexts (shared trunks), and a generation task.
    std::vector<std::string> eval_args(const std::string & name, const std::string & tasks, int shots) {
        return {"eval",        "--model", kModel, "--tasks", tasks, "--data-dir", kData, "--num-fewshot",
                std::to_string(shots), "--out", (dir / (name + ".json")).string(), "--log-samples",
                (dir / (name + ".jsonl")).string(), "--threads", "1", "--plain-progress", "--batch", "3"};
    }
};

TEST_F(MpiEval, ShardedEvalEqualsOneProcessByteForByte) {
    for (const auto & [tasks, shots] : std::vector<std::pair<std::string, int>>{
             {"arc_easy,hellaswag,winogrande,gsm8k,mmlu", 2}, {"truthfulqa_mc", 0}}) {
        SCOPED_TRACE(tasks);
        const RunResult one = run_paft(eval_args("one", tasks, shots), dir);
        ASSERT_EQ(one.code, 0) << describe(one);
        for (int ranks : {2, 3}) {
            SCOPED_TRACE(ranks);
            const RunResult many = run_mpi(ranks, eval_args("many", tasks, shots), dir);
            ASSERT_EQ(many.code, 0) << describe(many);
            EXPECT_EQ(slurp(dir / "many.json"), slurp(dir / "one.json"));
            EXPECT_EQ(slurp(dir / "many.jsonl"), slurp(dir / "one.jsonl"));
            EXPECT_EQ(many.out, one.out);  // the table, printed once
            EXPECT_EQ(count_of(many.err, "results written to"), 1u) << many.err;
        }
        EXPECT_GE(json_lines(slurp(dir / "one.jsonl")).size(), 6u);
    }
}

TEST_F(MpiEval, ShardedEvalResumesFromAPartialFile) {
    const RunResult one = run_paft(eval_args("one", "arc_easy,winogrande", 2), dir);
    ASSERT_EQ(one.code, 0) << describe(one);
    // A run whose samples cannot be written (the path is a folder) fails at its very end and
    // leaves resumed.json.partial with both tasks' results.
    std::vector<std::string> args = eval_args("resumed", "arc_easy,winogrande", 2);
    std::vector<std::string> broken = args;
    broken[12]                      = dir.string();
    ASSERT_EQ(broken[11], "--log-samples");
    const RunResult failed = run_paft(broken, dir);
    ASSERT_EQ(failed.code, 1) << describe(failed);
    ASSERT_TRUE(fs::exists(dir / "resumed.json.partial"));
    const RunResult resumed = run_mpi(2, args, dir);
    ASSERT_EQ(resumed.code, 0) << describe(resumed);
    EXPECT_NE(resumed.err.find("2 finished task(s) reused"), std::string::npos) << resumed.err;
    EXPECT_EQ(count_of(resumed.err, "reused"), 1u) << resumed.err;
    EXPECT_EQ(slurp(dir / "resumed.json"), slurp(dir / "one.json"));
    EXPECT_EQ(slurp(dir / "resumed.jsonl"), slurp(dir / "one.jsonl"));
    EXPECT_FALSE(fs::exists(dir / "resumed.json.partial"));
    // A partial file of other settings: every rank learns it from rank 0, one message, exit 2.
    spit(dir / "other.json.partial", "{\"model\": \"another\"}\n");
    const RunResult other = run_mpi(2, eval_args("other", "arc_easy", 2), dir);
    EXPECT_EQ(other.code, 2) << describe(other);
    EXPECT_EQ(count_of(other.err, "paft: error:"), 1u) << other.err;
    EXPECT_NE(other.err.find("other settings"), std::string::npos) << other.err;
}

TEST_F(MpiEval, BadInputOnOneRankStopsTheJobWithItsMessage) {
    // Rank 1 alone is given a data folder that does not exist (mpirun runs two programs as one job).
    std::vector<std::string> good = eval_args("bad", "arc_easy", 2), bad = good;
    bad[6]                        = (dir / "nowhere").string();
    const RunResult r             = run_mpi({{1, good}, {1, bad}}, dir);
    EXPECT_EQ(r.code, 2) << describe(r);
    EXPECT_EQ(count_of(r.err, "paft: error:"), 1u) << r.err;
    EXPECT_NE(r.err.find("paft: error: rank 1: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("nowhere"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / "bad.json"));
}

class MpiGenerate : public MpiEval {
protected:
    void write_records(int n) {
        std::string in;
        for (int i = 0; i < n; i++) {
            in += json{{"prompt", (i % 3 ? "Once upon a time, story " : "The cat number ") + std::to_string(i)},
                       {"id", i}}
                      .dump() +
                  "\n";
        }
        spit(dir / "in.jsonl", in);
    }
    std::vector<std::string> generate_args(const std::string & out, const std::vector<std::string> & extra) {
        std::vector<std::string> a = {"generate", "--model", kModel, "--data", (dir / "in.jsonl").string(), "--out",
                                      (dir / out).string(), "--threads", "1", "--max-new-tokens", "16", "--batch",
                                      "3"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
};

TEST_F(MpiGenerate, ShardedRecordsEqualOneProcessGreedyAndSampled) {
    // More records than one round of the ranks (ranks x batch x 8), so rounds follow each other.
    write_records(61);
    for (const std::vector<std::string> & mode :
         {std::vector<std::string>{}, std::vector<std::string>{"--temperature", "0.9", "--top-p", "0.95", "--seed", "7"}}) {
        SCOPED_TRACE(mode.empty() ? "greedy" : "sampled");
        fs::remove(dir / "one.jsonl");
        fs::remove(dir / "many.jsonl");
        const RunResult one = run_paft(generate_args("one.jsonl", mode), dir);
        ASSERT_EQ(one.code, 0) << describe(one);
        const RunResult many = run_mpi(2, generate_args("many.jsonl", mode), dir);
        ASSERT_EQ(many.code, 0) << describe(many);
        EXPECT_EQ(slurp(dir / "many.jsonl"), slurp(dir / "one.jsonl"));
        EXPECT_EQ(json_lines(slurp(dir / "many.jsonl")).size(), 61u);
        EXPECT_EQ(count_of(many.err, "wrote 61 records"), 1u) << many.err;
    }
    // Resumed across ranks after 5 records (sampled: the draws are keyed by the record's index).
    const std::string full = slurp(dir / "one.jsonl");
    size_t            cut  = 0;
    for (int i = 0; i < 5; i++) {
        cut = full.find('\n', cut) + 1;
    }
    spit(dir / "resumed.jsonl.partial", full.substr(0, cut + 7));  // and part of a sixth line
    const RunResult resumed = run_mpi(
        2, generate_args("resumed.jsonl", {"--temperature", "0.9", "--top-p", "0.95", "--seed", "7"}), dir);
    ASSERT_EQ(resumed.code, 0) << describe(resumed);
    EXPECT_NE(resumed.err.find("resuming after the 5 records"), std::string::npos) << resumed.err;
    EXPECT_EQ(slurp(dir / "resumed.jsonl"), full);
}

TEST_F(MpiGenerate, APromptRunsInOneProcess) {
    const RunResult r = run_mpi(2, {"generate", "--model", kModel, "--prompt", "Hello"}, dir);
    EXPECT_EQ(r.code, 2) << describe(r);
    EXPECT_EQ(count_of(r.err, "paft: error:"), 1u) << r.err;
    EXPECT_NE(r.err.find("without mpirun"), std::string::npos) << r.err;
}

}  // namespace

namespace {

// `mpirun -np 2 paft run` with one thread a rank against one process of two threads: the trainings
// are shared as two workers are (the same bytes), the evaluations decode a small model on one
// thread either way; merges and exports are rank 0's. Every adapter, model and score is the same.
TEST_F(MpiEval, RunOverTwoRanksEqualsOneProcess) {
    RunResult r = run_paft({"synth", "--out", (dir / "world").string(), "--seed", "3", "--people", "12",
                            "--heldout-people", "4", "--corpus-docs", "300", "--sft-examples", "32",
                            "--pref-examples", "32", "--judge-prompts", "4", "--vocab-size", "300"},
                           dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    const fs::path world = dir / "world";
    r = run_paft({"pretrain", "--data", (world / "corpus.jsonl").string(), "--tokenizer",
                  (world / "tokenizer").string(), "--out", (dir / "base").string(), "--preset", "paft-tiny",
                  "--seq-len", "64", "--batch-size", "8", "--max-steps", "2", "--threads", "2"},
                 dir);
    ASSERT_EQ(r.code, 0) << describe(r);
    auto recipe = [&](const std::string & out, int threads) {
        const std::string text =
            "output_dir: " + (dir / out).string() + "\nmodel_name_or_path: " + (dir / "base").string() +
            "\nthreads: " + std::to_string(threads) +
            "\nseed: 1\nlora_r: 4\nlora_alpha: 8\nmax_steps: 2\nper_device_train_batch_size: 4\nlogging_steps: 1\n"
            "save_steps: 0\nsft:\n  train_data: " + (world / "sft.jsonl").string() +
            "\n  learning_rate: 1.0e-3\n  l1_lambda: 1.0e-3\npreference:\n  method: dpo\n  train_data: " +
            (world / "prefs.jsonl").string() + "\n  learning_rate: 1.0e-3\nmerges:\n  - {method: ties, densities: "
            "[0.5, 0.5]}\nevaluation:\n  tasks: [" + (world / "tasks/world_facts.yaml").string() +
            "]\n  limit: 4\n  winrate: " + (world / "judge.jsonl").string() + "\n  max_new_tokens: 6\n";
        spit(dir / (out + ".yaml"), text);
        return (dir / (out + ".yaml")).string();
    };
    const RunResult one = run_paft({"run", recipe("one", 2)}, dir);
    ASSERT_EQ(one.code, 0) << describe(one);
    const RunResult two = run_mpi(2, {"run", recipe("two", 1)}, dir);
    ASSERT_EQ(two.code, 0) << describe(two);
    EXPECT_EQ(count_of(two.out, "report: "), 1u) << two.out;
    const std::vector<std::string> files = {
        "adapters/sft/adapter_model.safetensors",       "adapters/sft-sparse/adapter_model.safetensors",
        "adapters/dpo/adapter_model.safetensors",       "merged/paft-ties/model.safetensors",
        "merged/parallel-ties/model.safetensors",       "sequential/sft-dpo/model/model.safetensors",
        "sequential/sft-sparse-dpo/dpo/adapter_model.safetensors", "eval/paft-ties/results.json",
        "eval/base/results.json",                       "eval/dpo/winrate_answers.jsonl"};
    // The runs' own folders are named in the results: "two" read as "one".
    auto as_one = [&](std::string text) {
        const std::string two = (dir / "two").string(), one = (dir / "one").string();
        for (size_t at = text.find(two); at != std::string::npos; at = text.find(two, at + one.size())) {
            text.replace(at, two.size(), one);
        }
        return text;
    };
    for (const std::string & f : files) {
        ASSERT_TRUE(fs::exists(dir / "one" / f)) << f;
        EXPECT_EQ(as_one(slurp(dir / "two" / f)), slurp(dir / "one" / f)) << f;
    }
    const json a = json::parse(slurp(dir / "one/results.json"));
    const json b = json::parse(as_one(slurp(dir / "two/results.json")));
    EXPECT_EQ(b["rows"], a["rows"]);
    // Run again across the ranks: every stage is reused.
    const RunResult again = run_mpi(2, {"run", recipe("two", 1)}, dir);
    ASSERT_EQ(again.code, 0) << describe(again);
    EXPECT_NE(again.out.find("stages reused"), std::string::npos) << again.out;
}

}  // namespace
