// Training across MPI ranks (`mpirun -np N paft sft|dpo|orpo|pretrain`): N ranks of one thread give
// the bytes of one process of N threads on the same global batch (adapter, model and
// metrics.jsonl); `paft parallel` over two groups of ranks equals the standalone runs; a rank killed with SIGKILL, then --resume, ends as an uninterrupted run; bad
// input stops every rank with exit 2; commands that do not split their work refuse to run under
// mpirun. Skipped when this build has no MPI or mpirun is missing. mpirun runs as root in CI and on
// more ranks than cores here, hence its two options.
#include "core/communicator.h"
#include "io/fs.h"

#include "cli_util.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

// `mpirun -np ranks paft args...` (ranks 0: paft alone).
RunResult run_job(int ranks, const std::vector<std::string> & args, const fs::path & dir) {
    return ranks == 0 ? run_paft(args, dir) : run_mpi(ranks, args, dir);
}

class MpiTrain : public ::testing::Test {
protected:
    fs::path dir;

    void SetUp() override {
        if (!paft::mpi_available() || !have_mpirun()) {
            GTEST_SKIP() << "this build has no MPI, or mpirun is missing";
        }
        dir = fresh_test_folder("paft-mpi-train");
        RunResult r = run_paft({"init-model", "--preset", "tiny", "--out", (dir / "model").string()}, dir);
        ASSERT_EQ(r.code, 0) << describe(r);
        std::mt19937                        rng(3);
        std::uniform_int_distribution<int>  id(3, 200), len(3, 20);
        auto                                ids = [&](int n) {
            std::vector<int> v(n);
            for (int & x : v) {
                x = id(rng);
            }
            return v;
        };
        std::string sft, pref, corpus;
        for (int i = 0; i < 40; i++) {
            sft += json{{"input_ids", ids(len(rng) + 4)}}.dump() + "\n";
            pref += json{{"prompt_input_ids", ids(len(rng) / 3 + 2)},
                         {"chosen_input_ids", ids(len(rng) / 2 + 1)},
                         {"rejected_input_ids", ids(len(rng) / 2 + 1)}}
                        .dump() +
                    "\n";
            corpus += json{{"input_ids", ids(len(rng) * 4)}}.dump() + "\n";
        }
        spit(dir / "sft.jsonl", sft);
        spit(dir / "pref.jsonl", pref);
        spit(dir / "corpus.jsonl", corpus);
    }

    void TearDown() override {
        if (!dir.empty()) {
            fs::remove_all(dir);
        }
    }

    // A run of `method` (sft, dpo, orpo) into out: 2 threads alone, or 2 ranks of 1 thread.
    std::vector<std::string> train_args(const std::string & method, const fs::path & out, int threads) {
        const bool sft = method == "sft";
        std::vector<std::string> a = {method, "--model", (dir / "model").string(), "--data",
                                      (dir / (sft ? "sft.jsonl" : "pref.jsonl")).string(), "--out", out.string(),
                                      "--threads", std::to_string(threads), "--max-steps", "6", "--lora-r", "4",
                                      "--learning-rate", "1e-3", "--batch-size", "4", "--logging-steps", "2",
                                      "--lora-dropout", "0.1"};
        if (sft) {
            a.insert(a.end(), {"--gradient-accumulation-steps", "2", "--l1-lambda", "0.01"});
        }
        return a;
    }

    std::vector<std::string> pretrain_args(const fs::path & out, int threads) {
        return {"pretrain",   "--data",      (dir / "corpus.jsonl").string(),
                "--tokenizer", std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny",
                "--out",      out.string(),  "--threads", std::to_string(threads), "--seq-len", "32",
                "--batch-size", "4",         "--max-steps", "4", "--logging-steps", "1", "--save-steps", "2"};
    }
};

}  // namespace

TEST_F(MpiTrain, TwoRanksGiveTheBytesOfTwoThreads) {
    for (const std::string method : {"sft", "dpo", "orpo"}) {
        const fs::path one = dir / (method + "-threads"), two = dir / (method + "-ranks");
        RunResult      a = run_job(0, train_args(method, one, 2), dir);
        ASSERT_EQ(a.code, 0) << describe(a);
        RunResult b = run_job(2, train_args(method, two, 1), dir);
        ASSERT_EQ(b.code, 0) << describe(b);
        ASSERT_TRUE(fs::exists(two / "adapter_model.safetensors")) << method;
        EXPECT_EQ(slurp(one / "adapter_model.safetensors"), slurp(two / "adapter_model.safetensors")) << method;
        EXPECT_EQ(slurp(one / "metrics.jsonl"), slurp(two / "metrics.jsonl")) << method;
        // Rank 0 alone prints the summary line.
        EXPECT_EQ(std::count(b.out.begin(), b.out.end(), '\n'), 1) << b.out;
    }
    const fs::path one = dir / "pretrain-threads", two = dir / "pretrain-ranks";
    RunResult      a = run_job(0, pretrain_args(one, 2), dir);
    ASSERT_EQ(a.code, 0) << describe(a);
    RunResult b = run_job(2, pretrain_args(two, 1), dir);
    ASSERT_EQ(b.code, 0) << describe(b);
    ASSERT_TRUE(fs::exists(two / "model.safetensors"));
    EXPECT_EQ(slurp(one / "model.safetensors"), slurp(two / "model.safetensors"));
    EXPECT_EQ(slurp(one / "metrics.jsonl"), slurp(two / "metrics.jsonl"));
}

// A rank killed with SIGKILL takes the job down (mpirun stops the others); --resume from the last
// checkpoint then ends with the bytes of a run never interrupted.
TEST_F(MpiTrain, KilledRankThenResumeIsBitIdentical) {
    const fs::path whole = dir / "whole", killed = dir / "killed";
    auto           args  = [&](const fs::path & out) {
        std::vector<std::string> a = train_args("sft", out, 1);
        a[std::find(a.begin(), a.end(), "--max-steps") - a.begin() + 1] = "120";
        a.insert(a.end(), {"--save-steps", "5"});
        return a;
    };
    RunResult r = run_job(2, args(whole), dir);
    ASSERT_EQ(r.code, 0) << describe(r);

    // mpirun in its own process; its children are the ranks.
    const pid_t job = fork();
    ASSERT_GE(job, 0);
    if (job == 0) {
        std::vector<std::string> argv_s = kMpirun;
        argv_s.insert(argv_s.end(), {"-np", "2", kPaft});
        for (const std::string & a : args(killed)) {
            argv_s.push_back(a);
        }
        std::vector<char *> argv;
        for (std::string & s : argv_s) {
            argv.push_back(s.data());
        }
        argv.push_back(nullptr);
        const std::string log = (dir / "killed.log").string();
        freopen(log.c_str(), "w", stdout);
        freopen(log.c_str(), "a", stderr);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    int  status = 0;
    bool exited = false;
    while (!fs::exists(killed / "checkpoint-10")) {
        if (waitpid(job, &status, WNOHANG) == job) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_FALSE(exited) << "the job ended before a rank could be killed: " << slurp(dir / "killed.log");
    // The second rank: mpirun's last child.
    const std::string children = slurp(fs::path("/proc") / std::to_string(job) / "task" / std::to_string(job) /
                                       "children");
    std::vector<pid_t> pids;
    for (std::istringstream in(children); in;) {
        long p = 0;
        if (in >> p) {
            pids.push_back((pid_t) p);
        }
    }
    ASSERT_GE(pids.size(), 2u) << "mpirun's children: '" << children << "'";
    kill(pids.back(), SIGKILL);
    waitpid(job, &status, 0);
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the job finished despite the kill";
    ASSERT_FALSE(fs::exists(killed / "adapter_model.safetensors"));

    std::vector<std::string> resume = args(killed);
    resume.push_back("--resume");
    RunResult rr = run_job(2, resume, dir);
    ASSERT_EQ(rr.code, 0) << describe(rr);
    ASSERT_TRUE(fs::exists(killed / "adapter_model.safetensors"));
    EXPECT_EQ(slurp(whole / "adapter_model.safetensors"), slurp(killed / "adapter_model.safetensors"));
    EXPECT_EQ(slurp(whole / "metrics.jsonl"), slurp(killed / "metrics.jsonl"));
}

// paft parallel over 4 ranks: ranks 0-1 train SFT, 2-3 the preference branch, each group
// data-parallel; each adapter is the bytes of its standalone run with 2 threads, and the merged
// model the bytes of one process of `paft parallel --threads 4` (2 threads a branch).
TEST_F(MpiTrain, ParallelBranchGroupsEqualStandaloneRuns) {
    const std::string model = (dir / "model").string();
    auto parallel = [&](const fs::path & out, int threads) {
        return std::vector<std::string>{"parallel", "--model", model, "--sft-data", (dir / "sft.jsonl").string(),
                                        "--pref-data", (dir / "pref.jsonl").string(), "--out", out.string(),
                                        "--threads", std::to_string(threads), "--set", "max_steps=4",
                                        "--set", "per_device_train_batch_size=4", "--l1-lambda", "1e-3"};
    };
    RunResult ranks = run_job(4, parallel(dir / "ranks", 1), dir);
    ASSERT_EQ(ranks.code, 0) << describe(ranks);
    RunResult alone = run_job(0, parallel(dir / "alone", 4), dir);
    ASSERT_EQ(alone.code, 0) << describe(alone);
    RunResult sft = run_job(0, {"sft", "--model", model, "--data", (dir / "sft.jsonl").string(), "--out",
                                (dir / "sft").string(), "--threads", "2", "--max-steps", "4", "--batch-size", "4",
                                "--l1-lambda", "1e-3"},
                            dir);
    ASSERT_EQ(sft.code, 0) << describe(sft);
    RunResult dpo = run_job(0, {"dpo", "--model", model, "--data", (dir / "pref.jsonl").string(), "--out",
                                (dir / "dpo").string(), "--threads", "2", "--max-steps", "4", "--batch-size", "4"},
                            dir);
    ASSERT_EQ(dpo.code, 0) << describe(dpo);
    for (const char * file : {"ranks/sft/adapter_model.safetensors", "ranks/preference/adapter_model.safetensors",
                              "ranks/model/model.safetensors", "sft/adapter_model.safetensors"}) {
        ASSERT_TRUE(fs::exists(dir / file)) << file;
    }
    EXPECT_EQ(slurp(dir / "ranks/sft/adapter_model.safetensors"), slurp(dir / "sft/adapter_model.safetensors"));
    EXPECT_EQ(slurp(dir / "ranks/preference/adapter_model.safetensors"),
              slurp(dir / "dpo/adapter_model.safetensors"));
    EXPECT_EQ(slurp(dir / "ranks/model/model.safetensors"), slurp(dir / "alone/model/model.safetensors"));
    EXPECT_TRUE(fs::exists(dir / "ranks/paft_recipe.yaml"));

    // --branch-ranks 1:3: rank 0 trains SFT as one thread would, ranks 1-3 DPO as three threads.
    std::vector<std::string> uneven = parallel(dir / "uneven", 1);
    uneven.insert(uneven.end(), {"--branch-ranks", "1:3"});
    RunResult split = run_job(4, uneven, dir);
    ASSERT_EQ(split.code, 0) << describe(split);
    EXPECT_NE(split.err.find("ranks: sft 1, dpo 3"), std::string::npos) << split.err;
    for (const auto & [method, threads] : std::vector<std::pair<std::string, int>>{{"sft", 1}, {"dpo", 3}}) {
        std::vector<std::string> a = {method, "--model", model, "--data",
                                      (dir / (method == "sft" ? "sft.jsonl" : "pref.jsonl")).string(), "--out",
                                      (dir / (method + "-alone")).string(), "--threads", std::to_string(threads),
                                      "--max-steps", "4", "--batch-size", "4"};
        if (method == "sft") {
            a.insert(a.end(), {"--l1-lambda", "1e-3"});
        }
        RunResult r = run_job(0, a, dir);
        ASSERT_EQ(r.code, 0) << describe(r);
    }
    EXPECT_EQ(slurp(dir / "uneven/sft/adapter_model.safetensors"), slurp(dir / "sft-alone/adapter_model.safetensors"));
    EXPECT_EQ(slurp(dir / "uneven/preference/adapter_model.safetensors"),
              slurp(dir / "dpo-alone/adapter_model.safetensors"));
    // A split that does not add up to the job's ranks: exit 2, one message.
    std::vector<std::string> wrong = parallel(dir / "wrong", 1);
    wrong.insert(wrong.end(), {"--branch-ranks", "1:2"});
    RunResult bad = run_job(4, wrong, dir);
    EXPECT_EQ(bad.code, 2) << describe(bad);
    EXPECT_EQ(count_of(bad.err, "paft: error:"), 1u) << bad.err;
    EXPECT_NE(bad.err.find("this job has 4"), std::string::npos) << bad.err;
}

// paft sequential over 2 ranks: both stages shared by the ranks, one after the other; the bytes
// of one process of 2 threads.
TEST_F(MpiTrain, SequentialOverRanksEqualsOneProcess) {
    auto sequential = [&](const fs::path & out, int threads) {
        return std::vector<std::string>{"sequential", "--model", (dir / "model").string(), "--sft-data",
                                        (dir / "sft.jsonl").string(), "--pref-data", (dir / "pref.jsonl").string(),
                                        "--out", out.string(), "--threads", std::to_string(threads), "--set",
                                        "max_steps=3", "--set", "per_device_train_batch_size=4"};
    };
    RunResult ranks = run_job(2, sequential(dir / "ranks", 1), dir);
    ASSERT_EQ(ranks.code, 0) << describe(ranks);
    RunResult alone = run_job(0, sequential(dir / "alone", 2), dir);
    ASSERT_EQ(alone.code, 0) << describe(alone);
    for (const char * file : {"sft/adapter_model.safetensors", "preference/adapter_model.safetensors",
                              "sft-model/model.safetensors", "model/model.safetensors"}) {
        ASSERT_TRUE(fs::exists(dir / "alone" / file)) << file;
        EXPECT_EQ(slurp(dir / "ranks" / file), slurp(dir / "alone" / file)) << file;
    }
}

TEST_F(MpiTrain, BadInputStopsEveryRankWithExitTwo) {
    std::vector<std::string> a = train_args("sft", dir / "out", 1);
    a[std::find(a.begin(), a.end(), "--data") - a.begin() + 1] = (dir / "missing.jsonl").string();
    RunResult r = run_job(2, a, dir);
    EXPECT_EQ(r.code, 2) << describe(r);
    EXPECT_NE(r.err.find("missing.jsonl"), std::string::npos) << r.err;
    // Every rank meets it; rank 0 alone reports it.
    EXPECT_EQ(count_of(r.err, "paft: error:"), 1u) << r.err;
}

TEST_F(MpiTrain, CommandsThatDoNotSplitRefuseRanks) {
    RunResult r = run_job(2, {"score", "--model", (dir / "model").string(), "--data", (dir / "sft.jsonl").string()},
                          dir);
    EXPECT_EQ(r.code, 2) << describe(r);
    EXPECT_NE(r.err.find("does not run across MPI ranks"), std::string::npos) << r.err;
}
