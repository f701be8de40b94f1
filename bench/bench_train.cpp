// Benchmark: training throughput of paft's Trainer against the PyTorch peer (bench/torch_train.py)
// on the same generated model, the same synthetic examples and the same thread count, with LoRA
// r=16 alpha=32 (dropout 0.05, TRL's default) on all seven projections, AdamW, max_grad_norm 1:
//
//   sft  per_device_train_batch_size 4 sequences of T tokens, every token trained, l1_lambda 1e-4
//        (the PAFT penalty is part of every step)
//   dpo  sigmoid loss, 4 pairs of prompt P + completions C tokens: 8 rows a step, the reference
//        log-probs computed once before training (by both; not part of the timed steps)
//
// Prints tokens/s (real tokens through the model, chosen and rejected rows both counted for DPO)
// and the ratio paft / PyTorch. Asserts nothing about time.
//
//   build/bench-train --preset llama-20m --steps 6 --warmup 2 --threads 2 [--repeats 3]
//
// How paft's steady state is timed: TrainSummary::seconds covers every step of a run (and none of
// its setup, reference pass or final saves), but the first steps pay one-time costs (buffers
// growing, pages faulted in). So two fresh Trainers run on the same data, one for W steps and one
// for W + S; the difference of their step seconds (and tokens) is the cost of steps W+1..W+S of a
// run. (Resuming the W-step run for S more steps would time them directly, but a resumed run
// must have the same options, max_steps included.) The peer times its steps W+1..W+S directly.
// Both figures are means over S steps, not medians, so a noisy machine shows in both.
// --repeats N measures each side N times, in turns, and keeps each side's fastest (other work
// only ever slows a run down): for paft, the fastest W-step run is subtracted from the fastest
// (W+S)-step run. Every step of either side sees the same examples (one step's worth, drawn once),
// so the batches are the same up to row order, and the first step's loss is the same on both
// sides (B = 0: the base model's).
//
// Also printed, to show where paft's time goes outside the forward and backward: the time outside
// the steps (reference pass and saves), and the L1 penalty and clip + AdamW timed alone.
#include "core/backend.h"
#include "core/random.h"
#include "io/fs.h"
#include "model/model.h"
#include "model/presets.h"
#include "train/l1.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "train/trainer.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace paft;

namespace {

struct Args {
    std::string preset = "llama-20m";
    std::string methods = "sft,dpo";
    int         batch = 4, seq = 256, prompt = 128, completion = 128;
    int         steps = 6, warmup = 2, threads = 2, rank = 16, repeats = 1;
    double      dropout = 0.05, l1_lambda = 1e-4;
    bool        no_torch = false, keep = false;
};

std::vector<int32_t> random_ids(Random & rng, int n, int vocab) {
    std::vector<int32_t> ids(n);
    for (auto & id : ids) {
        id = (int32_t) (rng.next_u64() % (uint64_t) vocab);
    }
    return ids;
}

// One optimizer step's examples, for the Trainer and (as JSON) for the peer.
struct Workload {
    TrainData      data;
    nlohmann::json peer;
    long           tokens_per_step = 0;
};

Workload sft_workload(const Args & a, int vocab) {
    Random   rng(7);
    Workload w;
    for (int i = 0; i < a.batch; i++) {
        SftExample e;
        e.where     = fmt::format("synthetic:{}", i + 1);
        e.schema    = "text";
        e.input_ids = random_ids(rng, a.seq, vocab);
        e.labels    = e.input_ids;  // every token trained
        w.peer["examples"].push_back(e.input_ids);
        w.data.sft.push_back(std::move(e));
    }
    w.tokens_per_step = (long) a.batch * a.seq;
    return w;
}

Workload dpo_workload(const Args & a, int vocab) {
    Random   rng(8);
    Workload w;
    for (int i = 0; i < a.batch; i++) {
        PreferenceExample e;
        e.where        = fmt::format("synthetic:{}", i + 1);
        e.prompt_ids   = random_ids(rng, a.prompt, vocab);
        e.chosen_ids   = random_ids(rng, a.completion, vocab);
        e.rejected_ids = random_ids(rng, a.completion, vocab);
        w.peer["pairs"].push_back({{"prompt", e.prompt_ids}, {"chosen", e.chosen_ids}, {"rejected", e.rejected_ids}});
        w.data.pref.push_back(std::move(e));
    }
    w.tokens_per_step = 2L * a.batch * (a.prompt + a.completion);
    return w;
}

TrainOptions options_for(Method method, const Args & a, const std::string & model_dir, const std::string & out,
                         long steps) {
    TrainOptions o                = TrainOptions::defaults(method);
    o.model                       = model_dir;
    o.train_data                  = "synthetic";
    o.output_dir                  = out;
    o.lora.r                      = a.rank;
    o.lora.alpha                  = 2.0f * (float) a.rank;
    o.lora.dropout                = (float) a.dropout;
    o.lora.targets.fill(true);
    o.max_steps                   = steps;
    o.per_device_train_batch_size = a.batch;
    o.gradient_accumulation_steps = 1;
    o.max_grad_norm               = 1.0;
    o.threads                     = a.threads;
    o.logging_steps               = 1;  // a line per step: the losses to compare, for a few microseconds
    o.save_steps                  = 0;  // no checkpoints inside the timed steps
    o.data.max_length             = 0;  // the examples are built here: nothing to truncate
    if (method == Method::sft) {
        o.l1_lambda = a.l1_lambda;
    } else {
        o.preference.loss = PreferenceLoss::sigmoid;
    }
    return o;
}

// The "loss" of every step of a run (logging_steps 1).
std::vector<double> logged_losses(const std::string & out) {
    std::vector<double> losses;
    std::ifstream       in(out + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.contains("loss")) {
            losses.push_back(j["loss"].get<double>());
        }
    }
    return losses;
}

struct PaftRun {
    TrainSummary summary;
    double       wall = 0;  // the whole run(): setup, reference pass, steps, saves
};

PaftRun run_trainer(Backend & backend, std::shared_ptr<const Model> model, TrainOptions options,
                    const TrainData & data) {
    std::filesystem::remove_all(options.output_dir);
    Trainer trainer(backend, model, std::move(options), data);
    PaftRun r;
    double  t0 = now_s();
    r.summary  = trainer.run();
    r.wall     = now_s() - t0;
    return r;
}

struct Figures {
    double              tokens_per_s = 0, step_s = 0;
    double              outside_s = 0;  // paft: the longer run's time outside its steps; peer: reference pass
    std::vector<double> losses;
};

// paft's runs of W and W + S steps, each the fastest of the repeats so far.
struct PaftTimes {
    double              short_s = 1e300, long_s = 1e300, outside_s = 1e300;
    long                tokens = 0;  // of steps W+1..W+S (the same every time)
    std::vector<double> losses;      // of the W + S run (the same every time)

    Figures figures(int steps) const {
        Figures f;
        const double seconds = long_s - short_s;
        f.step_s             = seconds / steps;
        f.tokens_per_s       = seconds > 0 ? (double) tokens / seconds : 0.0;
        f.outside_s          = outside_s;
        f.losses             = losses;
        return f;
    }
};

void measure_paft(Backend & backend, std::shared_ptr<const Model> model, Method method, const Args & a,
                  const std::string & model_dir, const std::string & root, const Workload & w, PaftTimes & t) {
    const std::string name      = method_name(method);
    const std::string short_out = fmt::format("{}/{}-w", root, name), long_out = fmt::format("{}/{}-ws", root, name);
    PaftRun shorter = run_trainer(backend, model, options_for(method, a, model_dir, short_out, a.warmup), w.data);
    PaftRun longer  = run_trainer(backend, model, options_for(method, a, model_dir, long_out, a.warmup + a.steps),
                                  w.data);
    t.short_s   = std::min(t.short_s, shorter.summary.seconds);
    t.long_s    = std::min(t.long_s, longer.summary.seconds);
    t.outside_s = std::min(t.outside_s, longer.wall - longer.summary.seconds);
    t.tokens    = longer.summary.tokens - shorter.summary.tokens;
    t.losses    = logged_losses(long_out);
}

Figures measure_torch(Method method, const Args & a, const std::string & model_dir, const std::string & root,
                      const Workload & w, std::string & phases) {
    const std::string data = fmt::format("{}/{}-peer.json", root, method_name(method));
    write_file_atomic(data, w.peer.dump());
    std::string cmd = fmt::format("/usr/bin/python3 {}/bench/torch_train.py --model {} --data {} --method {} "
                                  "--threads {} --steps {} --warmup {} --rank {} --alpha {} --dropout {} "
                                  "--l1-lambda {}",
                                  PAFT_SOURCE_DIR, model_dir, data, method_name(method), a.threads, a.steps, a.warmup,
                                  a.rank, 2 * a.rank, a.dropout, a.l1_lambda);
    nlohmann::json peer = run_peer(cmd);
    Figures        f;
    if (peer.is_null()) {
        return f;
    }
    if (peer["tokens_per_step"].get<long>() != w.tokens_per_step) {
        fmt::print(stderr, "warning: the peer's steps take {} tokens, expected {}\n",
                   peer["tokens_per_step"].get<long>(), w.tokens_per_step);
    }
    f.tokens_per_s = peer["tokens_per_s"].get<double>();
    f.step_s       = peer["step_s"].get<double>();
    f.outside_s    = peer["reference_s"].get<double>();
    f.losses       = peer["losses"].get<std::vector<double>>();
    for (const auto & [k, v] : peer["phases"].items()) {
        phases += fmt::format(" {} {:.3f}", k, v.get<double>());
    }
    return f;
}

// paft's L1 penalty (with its subgradient) and clip + AdamW over the adapter, timed alone: the
// per-step costs outside the forward and backward. Median of a few repetitions.
void print_step_extras(Backend & backend, const ModelConfig & config, const Args & a) {
    LoraConfig lc;
    lc.r     = a.rank;
    lc.alpha = 2.0f * (float) a.rank;
    lc.targets.fill(true);
    LoraAdapter adapter(config, lc);
    adapter.init_peft(3);
    for (float & v : adapter.params()) {  // B nonzero, as after a few steps
        v += 1e-3f;
    }
    std::vector<float> grads(adapter.grads().size(), 1e-4f);
    auto               optimizer = make_optimizer(OptimizerConfig{}, adapter.params().size());
    auto median_of = [](auto && fn) {
        std::vector<double> t;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_s();
            fn();
            t.push_back(now_s() - t0);
        }
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
    };
    double l1   = median_of([&] { l1_penalty(backend, adapter, a.l1_lambda, 1e-5, grads.data()); });
    double opt  = median_of([&] {
        clip_grad_norm(grads.data(), grads.size(), 1.0);
        optimizer->step(adapter.params().data(), grads.data(), 1e-5);
    });
    fmt::print("paft per step, timed alone: L1 penalty + subgradient {:.1f} ms, clip + AdamW {:.2f} ms "
               "({} LoRA parameters)\n",
               l1 * 1e3, opt * 1e3, adapter.params().size());
}

std::string loss_span(const std::vector<double> & losses) {
    return losses.empty() ? std::string("-") : fmt::format("{:.4f} -> {:.4f}", losses.front(), losses.back());
}

}  // namespace

int main(int argc, char ** argv) {
    Args     a;
    CLI::App app{"Training throughput: paft's Trainer against the PyTorch peer"};
    app.add_option("--preset", a.preset, "tiny, llama-20m, llama-120m")->capture_default_str();
    app.add_option("--methods", a.methods, "comma-separated: sft, dpo")->capture_default_str();
    app.add_option("--batch", a.batch, "sequences (sft) or pairs (dpo) per step")->capture_default_str();
    app.add_option("--seq", a.seq, "sft sequence length")->capture_default_str();
    app.add_option("--prompt", a.prompt, "dpo prompt length")->capture_default_str();
    app.add_option("--completion", a.completion, "dpo completion length")->capture_default_str();
    app.add_option("--steps", a.steps, "timed steps")->capture_default_str();
    app.add_option("--warmup", a.warmup, "steps before the timed ones")->capture_default_str();
    app.add_option("--threads", a.threads)->capture_default_str();
    app.add_option("--repeats", a.repeats, "measure each side this many times, alternating; keep each side's fastest")
        ->capture_default_str();
    app.add_option("--rank", a.rank)->capture_default_str();
    app.add_option("--dropout", a.dropout, "LoRA dropout")->capture_default_str();
    app.add_option("--l1-lambda", a.l1_lambda, "sft: the PAFT penalty's weight")->capture_default_str();
    app.add_flag("--no-torch", a.no_torch, "Skip the PyTorch peer");
    app.add_flag("--keep", a.keep, "Keep the temporary folder (model, runs, peer data)");
    CLI11_PARSE(app, argc, argv);
    if (a.steps < 1 || a.warmup < 1 || a.repeats < 1) {
        fmt::print(stderr, "--steps, --warmup and --repeats must be at least 1\n");
        return 2;
    }

    ModelConfig       config = model_preset(a.preset);
    auto              model  = Model::random(config, 1);
    const std::string root =
        (std::filesystem::temp_directory_path() / fmt::format("paft-bench-train-{}-{}", a.preset, getpid())).string();
    const std::string model_dir = root + "/model";
    model->save(model_dir, DType::F32);
    auto backend = make_backend(a.threads);

    struct Row {
        std::string method;
        Figures     paft, torch;
        std::string phases;
    };
    std::vector<Row> rows;
    const std::string load_before = load_average();
    for (const std::string & name : {std::string("sft"), std::string("dpo")}) {
        if (a.methods.find(name) == std::string::npos) {
            continue;
        }
        const Method   method = method_from_name(name);
        const Workload w      = method == Method::sft ? sft_workload(a, config.vocab_size)
                                                      : dpo_workload(a, config.vocab_size);
        Row            row;
        row.method = name;
        // On a shared machine other work only ever slows a run down, so each side keeps its
        // fastest: paft the fastest W-step run and the fastest (W+S)-step run (the minima, not
        // the largest difference, which a slowed W-step run would inflate), the peer its fastest
        // S timed steps. The sides take turns, so both meet the same spells of load.
        PaftTimes paft_times;
        for (int rep = 0; rep < a.repeats; rep++) {
            measure_paft(*backend, model, method, a, model_dir, root, w, paft_times);
            if (!a.no_torch) {
                std::string phases;
                Figures     t = measure_torch(method, a, model_dir, root, w, phases);
                if (t.tokens_per_s > row.torch.tokens_per_s) {
                    row.torch  = std::move(t);
                    row.phases = std::move(phases);
                }
            }
        }
        row.paft = paft_times.figures(a.steps);
        if (paft_times.tokens != (long) a.steps * w.tokens_per_step) {  // both sides must count the same tokens
            fmt::print(stderr, "warning: paft's timed steps took {} tokens, expected {}\n", paft_times.tokens,
                       (long) a.steps * w.tokens_per_step);
        }
        rows.push_back(std::move(row));
    }

    fmt::print("\nmodel {} ({:.1f}M parameters), LoRA r={} alpha={} dropout {} on all seven projections, "
               "AdamW, max_grad_norm 1, {} threads\n",
               a.preset, model->size() / 1e6, a.rank, 2 * a.rank, a.dropout, a.threads);
    fmt::print("sft: {} x {} tokens a step, l1_lambda {}; dpo: {} pairs x (prompt {} + completion {}) = {} rows "
               "a step, sigmoid\n",
               a.batch, a.seq, a.l1_lambda, a.batch, a.prompt, a.completion, 2 * a.batch);
    fmt::print("{} warm-up + {} timed steps{}; load average {} before, {} after\n\n", a.warmup, a.steps,
               a.repeats > 1 ? fmt::format(", the fastest of {} runs a side", a.repeats) : std::string(), load_before,
               load_average());
    fmt::print("{:<6} {:>12} {:>12} {:>7}   {:>10} {:>10}   {:<22} {:<22}\n", "method", "paft tok/s", "torch tok/s",
               "ratio", "paft s/st", "torch s/st", "paft loss", "torch loss");
    for (const Row & r : rows) {
        const double ratio = r.torch.tokens_per_s > 0 ? r.paft.tokens_per_s / r.torch.tokens_per_s : 0.0;
        fmt::print("{:<6} {:>12.1f} {:>12.1f} {:>6.2f}x   {:>10.3f} {:>10.3f}   {:<22} {:<22}\n", r.method,
                   r.paft.tokens_per_s, r.torch.tokens_per_s, ratio, r.paft.step_s, r.torch.step_s,
                   loss_span(r.paft.losses), loss_span(r.torch.losses));
    }
    fmt::print("\n");
    for (const Row & r : rows) {
        fmt::print("{}: paft outside the steps {:.2f} s (setup{}, final saves); torch reference pass {:.2f} s\n",
                   r.method, r.paft.outside_s, r.method == "dpo" ? ", reference pass" : "", r.torch.outside_s);
        if (!r.phases.empty()) {
            fmt::print("{}: torch seconds a step by phase:{}\n", r.method, r.phases);
        }
    }
    print_step_extras(*backend, config, a);
    if (!a.keep) {
        std::filesystem::remove_all(root);
    } else {
        fmt::print("kept {}\n", root);
    }
    return 0;
}
