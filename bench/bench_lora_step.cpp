// Benchmark: one LoRA training step (forward + backward + AdamW, r=16 on all seven projections)
// in paft and in the PyTorch reference (bench/torch_lora_step.py), on the same model, batch and
// thread count, plus the machine's large-SGEMM rate as the ceiling. Prints figures and ratios;
// it asserts nothing about time.
//
//   build/bench-lora-step --preset llama-20m --batch 4 --seq 256 --steps 5 --threads 2
#include "core/backend.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/parallel.h"
#include "core/random.h"
#include "io/fs.h"
#include "train/optimizer.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

using namespace paft;

namespace {

// GFLOP/s of a large square SGEMM through the same backend: the machine's practical ceiling.
double sgemm_rate(Backend & backend, int n) {
    std::vector<float> a((size_t) n * n, 0.5f), b((size_t) n * n, 0.25f), c((size_t) n * n);
    backend.gemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        backend.gemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        best = std::min(best, now_s() - t0);
    }
    return 2.0 * n * n * (double) n / best / 1e9;
}

// Matrix-product FLOPs of one LoRA training step per token: frozen weights 4 per weight
// (forward and input gradient), LoRA 6 r (in + out) per module, the LM head 6 V C (forward,
// input gradient; paft's fused head needs no recomputation), attention 12 Hq D T/2 per layer
// (six T x T x D products per head, causal so half of them are useful).
double step_flops_per_token(const ModelConfig & c, int T, int r) {
    double C = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
    double linear = C * (Q + 2 * K) + Q * C + 3 * C * F;
    double lora   = 6.0 * r * ((C + Q) + 2 * (C + K) + (Q + C) + 2 * (C + F) + (F + C));
    double attn   = 12.0 * c.num_heads * c.head_dim * T / 2.0;
    return c.num_layers * (4.0 * linear + lora + attn) + 4.0 * c.vocab_size * C;
}

}  // namespace

int main(int argc, char ** argv) {
    std::string preset = "llama-20m";
    int         batch = 4, seq = 256, steps = 5, warmup = 1, threads = 2, rank = 16;
    bool        no_torch = false;
    CLI::App    app{"LoRA training-step benchmark: paft against the PyTorch reference"};
    app.add_option("--preset", preset, "tiny, llama-20m, llama-120m")->capture_default_str();
    app.add_option("--batch", batch)->capture_default_str();
    app.add_option("--seq", seq)->capture_default_str();
    app.add_option("--steps", steps)->capture_default_str();
    app.add_option("--warmup", warmup)->capture_default_str();
    app.add_option("--threads", threads)->capture_default_str();
    app.add_option("--rank", rank)->capture_default_str();
    app.add_flag("--no-torch", no_torch, "Skip the PyTorch peer");
    CLI11_PARSE(app, argc, argv);

    ModelConfig config = model_preset(preset);
    auto        model  = Model::random(config, 1);
    std::string dir    = (std::filesystem::temp_directory_path() / fmt::format("paft-bench-{}", preset)).string();
    model->save(dir, DType::F32);

    // A random batch of full-length sequences, every next token scored.
    Random                            rng(7);
    std::vector<std::vector<int32_t>> rows(batch, std::vector<int32_t>(seq));
    for (auto & row : rows) {
        for (auto & id : row) {
            id = (int32_t) (rng.next_u64() % config.vocab_size);
        }
    }
    nlohmann::json batch_json;
    batch_json["input_ids"]      = rows;
    batch_json["attention_mask"] = std::vector<std::vector<int>>(batch, std::vector<int>(seq, 1));
    batch_json["labels"]         = rows;
    std::vector<int> positions(seq);
    for (int t = 0; t < seq; t++) {
        positions[t] = t;
    }
    batch_json["position_ids"] = std::vector<std::vector<int>>(batch, positions);
    write_file_atomic(dir + "/batch.json", batch_json.dump());
    Batch b = batch_from_rows(rows, nullptr, 0, false, config.vocab_size);

    auto        backend = make_backend(threads);
    LoraConfig  lc;
    lc.r     = rank;
    lc.alpha = 2.0f * rank;
    lc.targets.fill(true);
    LoraAdapter adapter(config, lc);
    adapter.init_peft(3);
    OptimizerConfig optimizer_config;
    optimizer_config.weight_decay = 0.01;  // torch.optim.AdamW's default, which the PyTorch peer uses
    auto        optimizer = make_optimizer(optimizer_config, adapter.params().size());
    ParallelTransformer transformer(*backend, model);
    std::vector<float> dlogp = mean_nll_gradient(b);

    std::vector<double> losses, times;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_s();
        adapter.zero_grads();
        const auto & logp = transformer.forward_backward(b, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
        double       loss = 0;
        for (size_t n = 0; n < logp.size(); n++) {
            loss -= logp[n] * (b.targets[n] >= 0);
        }
        optimizer->step(adapter.params().data(), adapter.grads().data(), 1e-4);
        if (s >= warmup) {
            losses.push_back(loss / b.target_count());
            times.push_back(now_s() - t0);
        }
    }
    // The median step: robust to the other work of a shared machine. The peer reports the same.
    std::sort(times.begin(), times.end());
    double paft_step   = times[times.size() / 2];
    double tokens      = (double) batch * seq;
    double paft_tps    = tokens / paft_step;
    double flops_token = step_flops_per_token(config, seq, rank);
    double peak        = sgemm_rate(*backend, 2048);

    fmt::print("model {} ({:.1f}M parameters), batch {} x {}, LoRA r={} on all seven projections, {} threads\n",
               preset, model->size() / 1e6, batch, seq, rank, threads);
    fmt::print("SGEMM 2048^3 ceiling: {:.1f} GFLOP/s; step needs {:.1f} MFLOP/token -> limit {:.0f} tokens/s\n", peak,
               flops_token / 1e6, peak * 1e9 / flops_token);
    fmt::print("paft:    {:8.1f} tokens/s  {:7.3f} s/step  {:6.1f} GFLOP/s  ({:.0f}% of limit)  loss {:.4f} -> {:.4f}\n",
               paft_tps, paft_step, paft_tps * flops_token / 1e9, 100.0 * paft_tps * flops_token / (peak * 1e9),
               losses.front(), losses.back());
    if (no_torch) {
        return 0;
    }
    std::string cmd = fmt::format("/usr/bin/python3 {}/bench/torch_lora_step.py --model {} --batch {}/batch.json "
                                  "--threads {} --steps {} --warmup {} --rank {} --alpha {}",
                                  PAFT_SOURCE_DIR, dir, dir, threads, steps, warmup, rank, 2 * rank);
    const nlohmann::json peer = run_peer(cmd);
    if (peer.is_null()) {
        return 1;
    }
    double torch_tps = peer["tokens_per_s"].get<double>();
    auto   tl        = peer["losses"];
    fmt::print("pytorch: {:8.1f} tokens/s  {:7.3f} s/step  {:6.1f} GFLOP/s  ({:.0f}% of limit)  loss {:.4f} -> {:.4f}"
               "  (torch {})\n",
               torch_tps, peer["step_s"].get<double>(), torch_tps * flops_token / 1e9,
               100.0 * torch_tps * flops_token / (peak * 1e9), tl.front().get<double>(), tl.back().get<double>(),
               peer["torch"].get<std::string>());
    fmt::print("ratio paft / pytorch: {:.2f}x\n", paft_tps / torch_tps);
    return 0;
}
