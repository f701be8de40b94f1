// Benchmark: `paft parallel` (both branches in one process over one shared copy of the base)
// against the same two branches run as two processes at once (`paft sft` and `paft dpo`, each with
// half the threads), on a generated model and synthetic pre-tokenized data. Prints the wall time
// and the peak resident memory of each, and their ratios; it asserts nothing about time.
//
//   build/bench-parallel --preset llama-20m --steps 10 --seq 128 --threads 2
#include "model/model.h"
#include "model/presets.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json   = nlohmann::json;

namespace {

struct Finished {
    double seconds = 0;
    long   peak_rss_kb = 0;  // of each process, summed
};

pid_t start(const std::string & paft, const std::vector<std::string> & args, const fs::path & log) {
    std::fflush(stdout);  // or the child would print our buffered lines again
    pid_t pid = fork();
    if (pid == 0) {
        if (!std::freopen(log.c_str(), "w", stderr) || !std::freopen("/dev/null", "w", stdout)) {
            _exit(127);
        }
        std::vector<char *> argv = {const_cast<char *>(paft.c_str())};
        for (const std::string & a : args) {
            argv.push_back(const_cast<char *>(a.c_str()));
        }
        argv.push_back(nullptr);
        execv(paft.c_str(), argv.data());
        _exit(127);
    }
    return pid;
}

// Runs the commands at once; wall time until the last ends, and their peak RSS (wait4's rusage).
Finished run_together(const std::string & paft, const std::vector<std::vector<std::string>> & commands,
                      const fs::path & dir) {
    const auto         t0 = std::chrono::steady_clock::now();
    std::vector<pid_t> pids;
    for (size_t i = 0; i < commands.size(); i++) {
        pids.push_back(start(paft, commands[i], dir / fmt::format("log-{}.txt", i)));
    }
    Finished f;
    for (pid_t pid : pids) {
        int           status = 0;
        struct rusage usage {};
        wait4(pid, &status, 0, &usage);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            throw std::runtime_error(fmt::format("a paft command failed; see the logs in {}", dir.string()));
        }
        f.peak_rss_kb += usage.ru_maxrss;
    }
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return f;
}

void write_data(const fs::path & dir, int examples, int seq, int vocab) {
    std::mt19937  rng(1);
    std::ofstream sft(dir / "sft.jsonl"), pref(dir / "pref.jsonl");
    auto          tokens = [&](int n) {
        std::vector<int> v(n);
        for (int & t : v) {
            t = 3 + rng() % (vocab - 3);
        }
        return v;
    };
    for (int i = 0; i < examples; i++) {
        sft << json{{"input_ids", tokens(seq)}}.dump() << "\n";
        pref << json{{"prompt_input_ids", tokens(seq / 2)},
                     {"chosen_input_ids", tokens(seq / 2)},
                     {"rejected_input_ids", tokens(seq / 2)}}
                    .dump()
             << "\n";
    }
}

}  // namespace

int main(int argc, char ** argv) {
    CLI::App    app{"paft parallel vs two processes: wall time and peak RSS"};
    std::string preset = "llama-20m", paft = std::string(PAFT_BUILD_DIR) + "/paft";
    int         steps = 10, seq = 128, threads = 2, batch = 4;
    app.add_option("--preset", preset)->capture_default_str();
    app.add_option("--steps", steps)->capture_default_str();
    app.add_option("--seq", seq, "tokens per SFT example (prompt and completions: half each)")->capture_default_str();
    app.add_option("--batch", batch)->capture_default_str();
    app.add_option("--threads", threads, "in all; each branch gets half")->capture_default_str();
    app.add_option("--paft", paft)->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const fs::path dir = fs::temp_directory_path() / fmt::format("paft-bench-parallel-{}", getpid());
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string model = (dir / "model").string();
    auto              m     = paft::Model::random(paft::model_preset(preset), 1);
    m->save(model, paft::DType::F32);
    write_data(dir, steps * batch, seq, m->config().vocab_size);
    const std::string half  = std::to_string(std::max(1, threads / 2));
    const std::string steps_s = std::to_string(steps), batch_s = std::to_string(batch);
    // The same settings for every branch: flags for the standalone commands, --set for parallel.
    const std::vector<std::string> common = {"--max-steps", steps_s, "--batch-size", batch_s, "--save-steps", "0"};
    const std::vector<std::string> common_set = {"--set", "max_steps=" + steps_s, "--set",
                                                 "per_device_train_batch_size=" + batch_s, "--set", "save_steps=0"};
    auto with = [&](std::vector<std::string> a) {
        const auto & extra = a[0] == "parallel" ? common_set : common;
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    };
    fmt::print("model {} ({:.1f}M parameters), {} steps of {} examples, {} threads in all\n", preset,
               m->size() / 1e6, steps, batch, threads);
    m.reset();

    Finished one = run_together(paft,
                                {with({"parallel", "--model", model, "--sft-data", (dir / "sft.jsonl").string(),
                                       "--pref-data", (dir / "pref.jsonl").string(), "--out",
                                       (dir / "paft").string(), "--threads", std::to_string(threads), "--no-merge"})},
                                dir);
    Finished two = run_together(
        paft,
        {with({"sft", "--model", model, "--data", (dir / "sft.jsonl").string(), "--out", (dir / "sft").string(),
               "--threads", half}),
         with({"dpo", "--model", model, "--data", (dir / "pref.jsonl").string(), "--out", (dir / "dpo").string(),
               "--threads", half})},
        dir);
    fmt::print("{:<34} {:>10} {:>14}\n", "", "wall s", "peak RSS MiB");
    fmt::print("{:<34} {:>10.2f} {:>14.1f}\n", "paft parallel (one process)", one.seconds, one.peak_rss_kb / 1024.0);
    fmt::print("{:<34} {:>10.2f} {:>14.1f}\n", "paft sft + paft dpo (two processes)", two.seconds,
               two.peak_rss_kb / 1024.0);
    fmt::print("ratio (one / two): wall {:.2f}, memory {:.2f}\n", one.seconds / two.seconds,
               (double) one.peak_rss_kb / two.peak_rss_kb);
    fs::remove_all(dir);
    return 0;
}
