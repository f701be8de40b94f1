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
