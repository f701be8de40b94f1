// Benchmark: `paft merge` against the PyTorch peer (bench/torch_merge.py: mergekit's generalized
// task arithmetic, streamed a tensor at a time) on the same generated inputs and thread count.
//
//   lora  two PEFT adapters (r=16, alpha 32, all seven projections, B nonzero) merged into a bf16
//         base: ties (density 0.5, weights 1,1) and task_arithmetic (weights 1,1)
//   full  three full bf16 "fine-tuned" models (the base plus small random noise) merged into the
//         base with ties (density 0.5, weights 1 each), given to paft as mergekit YAML
//
// Both sides compute in float32 and write bf16 safetensors. Each merge runs as a child process of
// this program, so both are measured the same way: wall clock from fork to wait4, peak RSS from
// wait4's rusage (ru_maxrss). Before each run every input file is read through once (both sides
// start with their inputs in the page cache) and sync() flushes the previous run's writes. Then
// the two outputs are compared entry by entry. Peak RSS includes the pages of memory-mapped inputs a
// process has touched and not unmapped (both sides map their inputs).
//
//   build/bench-merge --size small|1b --scenario lora|full|all --threads 2 [--repeats N]
//
// --size small is llama-120m (134M parameters, for smoke tests); 1b is TinyLlama 1.1B's shape
// (hidden 2048, 22 layers, 32 heads, 4 kv heads, intermediate 5632, vocab 32000). Generated inputs
// are kept in --data (default build/bench-merge-data/SIZE) and reused; outputs go to --work.
// --repeats N alternates the sides N times and keeps each side's fastest run and largest peak RSS.
// Asserts nothing about time.
#include "core/random.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace paft;
namespace fs = std::filesystem;

namespace {

struct Args {
    std::string paft     = std::string(PAFT_BUILD_DIR) + "/paft";
    std::string scenario = "all", size = "small", data, work = std::string(PAFT_BUILD_DIR) + "/bench-merge-runs";
    int         threads = 2, repeats = 1;
    double      shard_bytes = 5e9;  // the peer's shard size (mergekit's --out-shard-size default)
    bool        stable_sort = false, no_torch = false, no_paft = false, keep = false;
};

// ---- generated inputs (each written to DIR.tmp and renamed, so a present DIR is complete) ----

template <typename Write> void generate_once(const std::string & dir, const char * what, Write write) {
    if (fs::exists(dir)) {
        return;
    }
    const std::string tmp = dir + ".tmp";
    fs::remove_all(tmp);
    double t0 = now_s();
    write(tmp);
    fs::rename(tmp, dir);
    fmt::print("generated {} in {:.0f} s: {}\n", what, now_s() - t0, dir);
}

void generate_base(const std::string & dir, const ModelConfig & config) {
    generate_once(dir, "the base model", [&](const std::string & tmp) { Model::random(config, 1)->save(tmp, DType::BF16); });
}

// PEFT's initialisation for A, and B ~ N(0, 0.02^2) as after training (B = 0 would merge nothing):
// the deltas s * B * A then have about a tenth of the base weights' spread at 1b.
void generate_adapter(const std::string & dir, const std::string & base_dir, uint64_t seed) {
    generate_once(dir, "a LoRA adapter", [&](const std::string & tmp) {
        const ModelConfig config = load_model_config(base_dir);
        LoraConfig        lc;
        lc.r     = 16;
        lc.alpha = 32.0f;
        lc.targets.fill(true);
        LoraAdapter adapter(config, lc);
        adapter.init_peft(seed);
        Random rng(seed + 1000);
        for (int l = 0; l < adapter.layers(); l++) {
            for (int t = 0; t < TARGET_COUNT; t++) {
                float * b = adapter.B(l, t);
                for (size_t i = 0; i < (size_t) adapter.out_features(t) * lc.r; i++) {
                    b[i] = 0.02f * rng.normal();
                }
            }
        }
        adapter.save(tmp, base_dir);
    });
}

// The base (as stored, bf16) plus noise of 5% of each tensor's RMS, stored in bf16.
void generate_finetuned(const std::string & dir, const std::string & base_dir, uint64_t seed) {
    generate_once(dir, "a fine-tuned model", [&](const std::string & tmp) {
        auto   model = Model::load_f32(base_dir);
        Random rng(seed);
        for (const ParamEntry & e : model->layout().entries()) {
            float * p   = model->data() + e.offset;
            double  sum = 0;
            for (size_t i = 0; i < e.numel(); i++) {
                sum += (double) p[i] * p[i];
            }
            const float noise = 0.05f * (float) std::sqrt(sum / (double) e.numel());
            for (size_t i = 0; i < e.numel(); i++) {
                p[i] += noise * rng.normal();
            }
        }
        model->save(tmp, DType::BF16);
    });
}

// ---- running one merge ----

struct Measure {
    bool   ok      = false;
    double seconds = 0;
    long   rss_kib = 0;  // peak resident set, ru_maxrss
};

// Reads every file under the folders once, so each run starts with its inputs in the page cache.
void read_through(const std::vector<std::string> & dirs) {
    std::vector<char> buf(8 << 20);
    for (const std::string & dir : dirs) {
        for (const auto & entry : fs::recursive_directory_iterator(dir)) {
            if (!entry.is_regular_file()) {
                continue;
            }
            int fd = open(entry.path().c_str(), O_RDONLY);
            while (fd >= 0 && read(fd, buf.data(), buf.size()) > 0) {
            }
            if (fd >= 0) {
                close(fd);
            }
        }
    }
}

std::string tail_of(const std::string & path, size_t chars) {
    std::string text;
    try {
        text = read_file(path);
    } catch (...) {
    }
    return text.size() > chars ? text.substr(text.size() - chars) : text;
}

// Runs argv as a child with stdout and stderr going to `log`; times it and takes its peak RSS.
Measure run_child(const std::vector<std::string> & argv, const std::string & log) {
    std::vector<char *> cargv;
    for (const std::string & s : argv) {
        cargv.push_back(const_cast<char *>(s.c_str()));
    }
    cargv.push_back(nullptr);
    std::fflush(stdout);
    const double t0  = now_s();
    const pid_t  pid = fork();
    if (pid == 0) {
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(cargv[0], cargv.data());
        _exit(127);
    }
    Measure       m;
    int           status = 0;
    struct rusage ru {};
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) {
        fmt::print(stderr, "could not run {}: {}\n", argv[0], std::strerror(errno));
        return m;
    }
    m.seconds = now_s() - t0;
    m.rss_kib = ru.ru_maxrss;
    m.ok      = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!m.ok) {
        fmt::print(stderr, "failed (status {}): {}\n--- last lines of {}:\n{}\n", status, fmt::join(argv, " "), log,
                   tail_of(log, 3000));
    }
    return m;
}

// ---- comparing two merged models ----

struct Agreement {
    bool    ok       = false;
    size_t  tensors  = 0;
    int64_t entries  = 0;
    int64_t differ   = 0;  // entries whose bf16 values differ
    int64_t far      = 0;  // of those, more than one bf16 step apart (or of opposite signs)
    double  max_diff = 0;
    std::string problem;  // a tensor missing on one side or with another shape
};

// bf16 values compared through their f32 images: the bit patterns are the f32's top halves.
Agreement compare_outputs(const std::string & a_dir, const std::string & b_dir) {
    Agreement   r;
    TensorStore a = TensorStore::open_dir(a_dir), b = TensorStore::open_dir(b_dir);
    if (a.names() != b.names()) {
        r.problem = fmt::format("different tensor sets ({} vs {})", a.names().size(), b.names().size());
        return r;
    }
    for (const std::string & name : a.names()) {
        std::vector<int64_t> shape_a, shape_b;
        std::vector<float>   x = a.read_f32_any(name, &shape_a), y = b.read_f32_any(name, &shape_b);
        if (shape_a != shape_b) {
            r.problem = fmt::format("{}: different shapes", name);
            return r;
        }
        for (size_t i = 0; i < x.size(); i++) {
            if (x[i] == y[i]) {
                continue;
            }
            uint32_t bx, by;
            std::memcpy(&bx, &x[i], 4);
            std::memcpy(&by, &y[i], 4);
            const int64_t steps = std::abs((int64_t) (bx >> 16) - (int64_t) (by >> 16));
            r.differ++;
            r.far += ((bx ^ by) >> 31) != 0 || steps > 1;
            r.max_diff = std::max(r.max_diff, (double) std::fabs(x[i] - y[i]));
        }
        r.tensors++;
        r.entries += (int64_t) x.size();
    }
    r.ok = true;
    return r;
}

// ---- the cases ----

struct Case {
    std::string              scenario, method;
    std::vector<std::string> paft_args, torch_args;  // without the output folder
    std::vector<std::string> inputs;                 // folders read
};

std::string write_full_yaml(const std::string & path, const std::string & base, const std::vector<std::string> & models) {
    std::string y = "models:\n";
    for (const std::string & m : models) {
        y += fmt::format("  - model: {}\n    parameters:\n      weight: 1\n      density: 0.5\n", m);
    }
    y += fmt::format("merge_method: ties\nbase_model: {}\ndtype: float32\nout_dtype: bfloat16\n", base);
    write_file_atomic(path, y);
    return path;
}

std::vector<Case> make_cases(const Args & a, const std::string & data) {
    const std::string base = data + "/base", peer = std::string(PAFT_SOURCE_DIR) + "/bench/torch_merge.py";
    const std::string threads = std::to_string(a.threads);
    std::vector<std::string> torch_common = {"/usr/bin/python3", peer, "--base", base, "--threads", threads,
                                             "--shard-bytes", fmt::format("{:.0f}", a.shard_bytes)};
    if (a.stable_sort) {
        torch_common.push_back("--stable-sort");
    }
    std::vector<Case> cases;
    if (a.scenario == "lora" || a.scenario == "all") {
        const std::vector<std::string> adapters = {data + "/lora-1", data + "/lora-2"};
        for (const std::string method : {"ties", "task_arithmetic"}) {
            Case c{"lora", method, {a.paft, "merge", "--base", base}, torch_common, {base}};
            for (const std::string & d : adapters) {
                c.paft_args.insert(c.paft_args.end(), {"--adapter", d});
                c.torch_args.insert(c.torch_args.end(), {"--adapter", d});
                c.inputs.push_back(d);
            }
            c.paft_args.insert(c.paft_args.end(), {"--method", method, "--weight", "1,1", "--threads", threads,
                                                   "--out-dtype", "bfloat16"});
            c.torch_args.insert(c.torch_args.end(), {"--method", method, "--weights", "1,1"});
            if (c.method == "ties") {
                c.paft_args.insert(c.paft_args.end(), {"--density", "0.5"});
                c.torch_args.insert(c.torch_args.end(), {"--density", "0.5"});
            }
            cases.push_back(std::move(c));
        }
    }
    if (a.scenario == "full" || a.scenario == "all") {
        const std::vector<std::string> models = {data + "/ft-1", data + "/ft-2", data + "/ft-3"};
        const std::string              yaml   = write_full_yaml(data + "/full-ties.yaml", base, models);
        Case c{"full", "ties", {a.paft, "merge", yaml, "--threads", threads}, torch_common, {base}};
        for (const std::string & m : models) {
            c.torch_args.insert(c.torch_args.end(), {"--model", m});
            c.inputs.push_back(m);
        }
        c.torch_args.insert(c.torch_args.end(), {"--method", "ties", "--weights", "1,1,1", "--density", "0.5"});
        cases.push_back(std::move(c));
    }
    return cases;
}

struct Row {
    Case      c;
    Measure   paft, torch;
    Agreement agree;
};

void keep_best(Measure & best, const Measure & m) {
    if (!m.ok) {
        return;
    }
    best.seconds = best.ok ? std::min(best.seconds, m.seconds) : m.seconds;
    best.rss_kib = std::max(best.rss_kib, m.rss_kib);
    best.ok      = true;
}

Measure measure(const std::vector<std::string> & args, const std::vector<std::string> & inputs, const std::string & out) {
    fs::remove_all(out);
    sync();
    read_through(inputs);
    fmt::print("  {}\n", fmt::join(args, " "));
    std::vector<std::string> argv = args;
    argv.insert(argv.end(), {"--out", out});
    Measure m = run_child(argv, out + ".log");
    if (m.ok) {
        fmt::print("    {:.1f} s, peak RSS {:.0f} MiB\n", m.seconds, m.rss_kib / 1024.0);
    }
    return m;
}

uint64_t folder_bytes(const std::string & dir, const std::string & suffix) {
    uint64_t n = 0;
    for (const auto & e : fs::directory_iterator(dir)) {
        if (e.is_regular_file() && e.path().string().ends_with(suffix)) {
            n += e.file_size();
        }
    }
    return n;
}

std::string mib(long kib) { return kib > 0 ? fmt::format("{:.0f}", kib / 1024.0) : "-"; }

std::string ratio(double num, double den, const char * unit) {
    return num > 0 && den > 0 ? fmt::format("{:.2f}{}", num / den, unit) : "-";
}

void print_table(const std::vector<Row> & rows, uint64_t model_bytes, int64_t params) {
    fmt::print("\n{:<5} {:<16} {:>9} {:>9} {:>8}   {:>9} {:>9} {:>6}   {:>10} {:>10}   {:>9} {:>9}\n", "scen.",
               "method", "paft s", "torch s", "speedup", "paft MiB", "torch MiB", "ratio", "paft/model",
               "torch/model", "paft Mp/s", "torch Mp/s");
    for (const Row & r : rows) {
        const double mb = model_bytes / 1024.0;  // KiB, as ru_maxrss
        fmt::print("{:<5} {:<16} {:>9} {:>9} {:>8}   {:>9} {:>9} {:>6}   {:>10} {:>10}   {:>9} {:>9}\n", r.c.scenario,
                   r.c.method, r.paft.ok ? fmt::format("{:.1f}", r.paft.seconds) : "-",
                   r.torch.ok ? fmt::format("{:.1f}", r.torch.seconds) : "-",
                   ratio(r.torch.ok ? r.torch.seconds : 0, r.paft.ok ? r.paft.seconds : 0, "x"), mib(r.paft.rss_kib),
                   mib(r.torch.rss_kib), ratio((double) r.paft.rss_kib, (double) r.torch.rss_kib, ""),
                   ratio((double) r.paft.rss_kib, mb, ""), ratio((double) r.torch.rss_kib, mb, ""),
                   r.paft.ok ? fmt::format("{:.1f}", params / r.paft.seconds / 1e6) : "-",
                   r.torch.ok ? fmt::format("{:.1f}", params / r.torch.seconds / 1e6) : "-");
    }
    fmt::print("\nspeedup = torch s / paft s; ratio = paft peak RSS / torch peak RSS; X/model = peak RSS / the base's "
               "bf16 size; Mp/s = millions of the base's parameters per second\n");
    fmt::print("\nagreement of the two merged models (bf16 entries):\n");
    for (const Row & r : rows) {
        if (!r.paft.ok || !r.torch.ok) {
            continue;
        }
        const Agreement & g = r.agree;
        if (!g.ok) {
            fmt::print("{:<5} {:<16} not comparable: {}\n", r.c.scenario, r.c.method, g.problem);
            continue;
        }
        fmt::print("{:<5} {:<16} {} tensors, {} entries: {} differ ({:.2e}), {} by more than one bf16 step; "
                   "max |diff| {:.3g}\n",
                   r.c.scenario, r.c.method, g.tensors, g.entries, g.differ, (double) g.differ / (double) g.entries,
                   g.far, g.max_diff);
    }
}

}  // namespace

int main(int argc, char ** argv) {
    Args     a;
    CLI::App app{"Merging: paft merge against the PyTorch peer (mergekit's math)"};
    app.add_option("--paft", a.paft, "The paft program")->capture_default_str();
    app.add_option("--scenario", a.scenario, "lora, full or all")->capture_default_str();
    app.add_option("--size", a.size, "small (llama-120m) or 1b (TinyLlama 1.1B's shape)")->capture_default_str();
    app.add_option("--threads", a.threads, "for both sides")->capture_default_str();
    app.add_option("--repeats", a.repeats, "runs a side, alternating; the fastest is kept")->capture_default_str();
    app.add_option("--data", a.data, "generated inputs (reused when present); default build/bench-merge-data/SIZE");
    app.add_option("--work", a.work, "merged outputs and logs")->capture_default_str();
    app.add_option("--shard-bytes", a.shard_bytes, "the peer's output shard size (mergekit's --out-shard-size)")
        ->capture_default_str();
    app.add_flag("--stable-sort", a.stable_sort, "the peer breaks magnitude ties by lowest index, as paft does");
    app.add_flag("--no-torch", a.no_torch, "Skip the PyTorch peer");
    app.add_flag("--no-paft", a.no_paft, "Skip paft (test the peer and the harness)");
    app.add_flag("--keep", a.keep, "Keep the merged outputs");
    CLI11_PARSE(app, argc, argv);
    if ((a.size != "small" && a.size != "1b") || (a.scenario != "lora" && a.scenario != "full" && a.scenario != "all") ||
        a.repeats < 1 || a.threads < 1) {
        fmt::print(stderr, "--size small|1b, --scenario lora|full|all, --repeats and --threads at least 1\n");
        return 2;
    }
    const std::string data = a.data.empty() ? fmt::format("{}/bench-merge-data/{}", PAFT_BUILD_DIR, a.size) : a.data;
    make_dirs(data);
    make_dirs(a.work);

    const ModelConfig config = bench_model_shape(a.size);
    const std::string base   = data + "/base";
    generate_base(base, config);
    if (a.scenario != "full") {
        generate_adapter(data + "/lora-1", base, 11);
        generate_adapter(data + "/lora-2", base, 12);
    }
    if (a.scenario != "lora") {
        for (int i = 1; i <= 3; i++) {
            generate_finetuned(fmt::format("{}/ft-{}", data, i), base, 100 + i);
        }
    }
    const uint64_t model_bytes = folder_bytes(base, ".safetensors");
    const int64_t  params      = (int64_t) ParamLayout(config).size();

    std::vector<Row>  rows;
    const std::string load_before = load_average();
    for (const Case & c : make_cases(a, data)) {
        Row               row{c, {}, {}, {}};
        const std::string stem = fmt::format("{}/{}-{}-{}", a.work, a.size, c.scenario, c.method);
        fmt::print("{} {}:\n", c.scenario, c.method);
        for (int rep = 0; rep < a.repeats; rep++) {
            if (!a.no_paft) {
                keep_best(row.paft, measure(c.paft_args, c.inputs, stem + "-paft"));
            }
            if (!a.no_torch) {
                keep_best(row.torch, measure(c.torch_args, c.inputs, stem + "-torch"));
            }
        }
        if (row.paft.ok && row.torch.ok) {
            row.agree = compare_outputs(stem + "-paft", stem + "-torch");
        }
        if (!a.keep) {
            fs::remove_all(stem + "-paft");
            fs::remove_all(stem + "-torch");
        }
        rows.push_back(std::move(row));
    }

    fmt::print("\nmodel: {} shape, {:.1f}M parameters, base {:.2f} GB bf16; {} threads; {}{}; load average {} "
               "before, {} after\n",
               a.size == "1b" ? "TinyLlama 1.1B" : "llama-120m", params / 1e6, model_bytes / 1e9, a.threads,
               a.repeats > 1 ? fmt::format("fastest of {} runs a side", a.repeats) : std::string("one run a side"),
               a.stable_sort ? "; peer with stable argsort" : "", load_before, load_average());
    print_table(rows, model_bytes, params);
    return 0;
}
