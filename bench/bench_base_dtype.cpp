// Benchmark: a LoRA training step (forward + backward + AdamW, r=16 on all seven projections) on
// the same base kept in different types: f32 in one trainable buffer (the engine's f32 path), bf16
// as loaded (copied into huge pages) and read in place from the file mapping (--mmap), Q8_0
// (load_in_8bit), NF4 and FP4 (load_in_4bit, with and without double quantization). The variants
// take turns step by step in one process, so the ratios to the f32 path share the machine's noise;
// the median step of each is reported. Then the quantized bases' log-probability error against f32
// on a batch, for the preset and for llama-20m.
// Prints figures and ratios; asserts nothing about time.
//
//   build/bench-base-dtype --preset llama-120m --batch 4 --seq 256 --steps 5 --threads 2
#include "core/backend.h"
#include "core/random.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/presets.h"
#include "train/optimizer.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <vector>

using namespace paft;

namespace {

struct Variant {
    std::string                  name;
    std::shared_ptr<const Model> model;
    std::vector<double>          times;
};

Batch random_batch(const ModelConfig & c, int batch, int seq, uint64_t seed) {
    Random                            rng(seed);
    std::vector<std::vector<int32_t>> rows(batch, std::vector<int32_t>(seq));
    for (auto & row : rows) {
        for (auto & id : row) id = (int32_t) (rng.next_u64() % c.vocab_size);
    }
    return batch_from_rows(rows, nullptr, 0, false, c.vocab_size);
}

// A random model of `preset` written as bf16: the file every variant loads.
std::string write_base(const std::string & preset) {
    const std::string dir = (std::filesystem::temp_directory_path() / fmt::format("paft-bench-dtype-{}", preset)).string();
    auto              model = Model::random(model_preset(preset), 1);
    model->save(dir, DType::BF16);
    return dir;
}

const std::vector<std::pair<std::string, LoadOptions>> & quantized_loads() {
    static const std::vector<std::pair<std::string, LoadOptions>> loads = {
        {"int8 (Q8_0)", {TorchDtype::Auto, Quantization::Int8, false}},
        {"nf4", {TorchDtype::Auto, Quantization::NF4, false}},
        {"nf4 + double quant", {TorchDtype::Auto, Quantization::NF4, true}},
        {"fp4", {TorchDtype::Auto, Quantization::FP4, false}},
    };
    return loads;
}

// Mean and max |logp - logp_f32| over the batch's targets, for each quantized load of `preset`.
void logprob_errors(const std::string & preset, Backend & backend) {
    const std::string dir   = write_base(preset);
    auto              f32   = Model::load(dir, LoadOptions{TorchDtype::F32});
    const Batch       batch = random_batch(f32->config(), 2, 128, 11);
    ParallelTransformer ref_t(backend, f32);
    const std::vector<float> want = ref_t.forward(batch, nullptr);
    double                   mean_logp = 0;
    for (size_t i = 0; i < want.size(); i++) mean_logp += batch.targets[i] >= 0 ? want[i] : 0.0;
    mean_logp /= batch.target_count();
    fmt::print("\n{} ({:.1f}M parameters): log-probability error against the f32 base, {} targets (mean logp {:.3f})\n",
               preset, f32->size() / 1e6, batch.target_count(), mean_logp);
    fmt::print("  {:<20} {:>10} {:>10} {:>12}\n", "base", "mean |d|", "max |d|", "weights MB");
    fmt::print("  {:<20} {:>10} {:>10} {:>12.1f}\n", "bf16 (as stored)", "-", "-",
               Model::load(dir)->weight_bytes() / 1e6);
    for (const auto & [name, options] : quantized_loads()) {
        auto                     model = Model::load(dir, options);
        ParallelTransformer      t(backend, model);
        const std::vector<float> got = t.forward(batch, nullptr);
        double                   sum = 0, worst = 0;
        for (size_t i = 0; i < got.size(); i++) {
            if (batch.targets[i] < 0) continue;
            const double d = std::fabs((double) got[i] - want[i]);
            sum += d;
            worst = std::max(worst, d);
        }
        fmt::print("  {:<20} {:>10.5f} {:>10.5f} {:>12.1f}\n", name, sum / batch.target_count(), worst,
                   model->weight_bytes() / 1e6);
    }
}

}  // namespace

int main(int argc, char ** argv) {
    std::string preset = "llama-120m";
    int         batch = 4, seq = 256, steps = 5, threads = 2, rank = 16;
    CLI::App    app{"LoRA training step on bases of each type, against the f32 path"};
    app.add_option("--preset", preset, "tiny, llama-20m, llama-120m")->capture_default_str();
    app.add_option("--batch", batch)->capture_default_str();
    app.add_option("--seq", seq)->capture_default_str();
    app.add_option("--steps", steps)->capture_default_str();
    app.add_option("--threads", threads)->capture_default_str();
    app.add_option("--rank", rank)->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const std::string dir     = write_base(preset);
    auto              backend = make_backend(threads);
    std::vector<Variant> variants;
    variants.push_back({"f32 (trainable buffer)", Model::load_f32(dir), {}});
    variants.push_back({"bf16", Model::load(dir), {}});
    // The same bytes read in place from the file mapping (--mmap): the mapping's cost.
    LoadOptions mapped;
    mapped.mmap = true;
    variants.push_back({"bf16 (--mmap)", Model::load(dir, mapped), {}});
    for (const auto & [name, options] : quantized_loads()) variants.push_back({name, Model::load(dir, options), {}});
    const ModelConfig & config = variants[0].model->config();

    LoraConfig lc;
    lc.r     = rank;
    lc.alpha = 2.0f * rank;
    lc.targets.fill(true);
    const Batch              b     = random_batch(config, batch, seq, 7);
    const std::vector<float> dlogp = mean_nll_gradient(b);
    std::vector<LoraAdapter> adapters;
    std::vector<std::unique_ptr<ParallelTransformer>> transformers;
    std::vector<std::unique_ptr<Optimizer>>           optimizers;
    for (const Variant & v : variants) {
        adapters.emplace_back(config, lc);
        adapters.back().init_peft(3);
        transformers.push_back(std::make_unique<ParallelTransformer>(*backend, v.model));
        optimizers.push_back(make_optimizer(OptimizerConfig{}, adapters.back().params().size()));
    }
    // One warm-up step each, then the variants take turns.
    for (int s = 0; s < steps + 1; s++) {
        for (size_t i = 0; i < variants.size(); i++) {
            const double t0 = now_s();
            adapters[i].zero_grads();
            transformers[i]->forward_backward(b, &adapters[i], dlogp.data(), {adapters[i].grads().data(), nullptr});
            optimizers[i]->step(adapters[i].params().data(), adapters[i].grads().data(), 1e-4);
            if (s > 0) variants[i].times.push_back(now_s() - t0);
        }
    }
    fmt::print("model {} ({:.1f}M parameters), batch {} x {}, LoRA r={} on all seven projections, {} threads, load {}\n",
               preset, config.num_layers > 0 ? variants[0].model->size() / 1e6 : 0.0, batch, seq, rank, threads,
               load_average());
    fmt::print("  {:<24} {:>10} {:>9} {:>12} {:>12}\n", "base", "tokens/s", "s/step", "vs f32 path", "weights MB");
    double f32_tps = 0;
    for (Variant & v : variants) {
        std::sort(v.times.begin(), v.times.end());
        const double step = v.times[v.times.size() / 2];
        const double tps  = (double) batch * seq / step;
        if (f32_tps == 0) f32_tps = tps;
        fmt::print("  {:<24} {:>10.1f} {:>9.3f} {:>11.1f}% {:>12.1f}\n", v.name, tps, step, 100.0 * tps / f32_tps,
                   v.model->weight_bytes() / 1e6);
    }
    logprob_errors(preset, *backend);
    if (preset != "llama-20m") logprob_errors("llama-20m", *backend);
    return 0;
}
