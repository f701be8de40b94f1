// Benchmark: activation recomputation (gradient checkpointing) against keeping every layer's
// activations, for one LoRA training step (forward_backward, r=16 on all seven projections) on
// the same model, batch and thread count. Prints the bytes of saved activations, the median
// step time of each and their ratios, and whether the gradients are bit-identical. The two
// engines take turns step by step, so that a shared machine's load falls on both alike.
//
//   build/bench-recompute --preset llama-20m --batch 4 --seq 256 --steps 5 --threads 2
#include "core/backend.h"
#include "core/random.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"
#include "model/presets.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

using namespace paft;

namespace {

double mib(size_t bytes) {
    return bytes / (1024.0 * 1024.0);
}

}  // namespace

int main(int argc, char ** argv) {
    std::string preset = "llama-20m";
    int         batch = 4, seq = 256, steps = 5, warmup = 1, threads = 2, rank = 16;
    float       dropout = 0.0f;
    CLI::App    app{"Activation recomputation: saved-activation bytes and step time, with and without"};
    app.add_option("--preset", preset, "tiny, llama-20m, llama-120m")->capture_default_str();
    app.add_option("--batch", batch)->capture_default_str();
    app.add_option("--seq", seq)->capture_default_str();
    app.add_option("--steps", steps)->capture_default_str();
    app.add_option("--warmup", warmup)->capture_default_str();
    app.add_option("--threads", threads)->capture_default_str();
    app.add_option("--rank", rank)->capture_default_str();
    app.add_option("--dropout", dropout, "LoRA dropout (training mode)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    ModelConfig config = model_preset(preset);
    auto        model  = Model::random(config, 1);
    Random      rng(7);
    std::vector<std::vector<int32_t>> rows(batch, std::vector<int32_t>(seq));
    for (auto & row : rows) {
        for (auto & id : row) {
            id = (int32_t) (rng.next_u64() % config.vocab_size);
        }
    }
    Batch              b     = batch_from_rows(rows, nullptr, 0, false, config.vocab_size);
    std::vector<float> dlogp = mean_nll_gradient(b);

    auto       backend = make_backend(threads);
    LoraConfig lc;
    lc.r       = rank;
    lc.alpha   = 2.0f * rank;
    lc.dropout = dropout;
    lc.targets.fill(true);
    LoraAdapter adapter(config, lc);
    adapter.init_peft(3);
    Random init(11);
    for (float & p : adapter.params()) {  // B != 0, so that every LoRA path carries gradient
        p += 0.01f * init.normal();
    }

    // [0]: activations kept, [1]: recomputed.
    ParallelTransformer kept(*backend, model), redo(*backend, model);
    redo.set_recompute(true);
    ParallelTransformer * engines[2] = {&kept, &redo};
    std::vector<double>   times[2];
    std::vector<float>    grads[2], logp[2];
    for (int s = 0; s < warmup + steps; s++) {
        for (int k = 0; k < 2; k++) {
            engines[k]->set_training(true, 5, s);
            adapter.zero_grads();
            double t0 = now_s();
            logp[k]   = engines[k]->forward_backward(b, &adapter, dlogp.data(), {adapter.grads().data(), nullptr});
            double dt = now_s() - t0;
            grads[k]  = adapter.grads();
            if (s >= warmup) {
                times[k].push_back(dt);
            }
        }
    }
    for (auto & t : times) {
        std::sort(t.begin(), t.end());
    }
    const double step_kept = times[0][times[0].size() / 2], step_redo = times[1][times[1].size() / 2];
    const size_t bytes_kept = kept.activation_bytes(), bytes_redo = redo.activation_bytes();
    const size_t layer_inputs = (size_t) config.num_layers * b.tokens() * config.hidden_size * sizeof(float);
    auto         same_bits    = [](const std::vector<float> & x, const std::vector<float> & y) {
        return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    const bool identical = same_bits(grads[0], grads[1]) && same_bits(logp[0], logp[1]);

    fmt::print("model {} ({:.1f}M parameters, {} layers), batch {} x {}, LoRA r={} on all seven projections, "
               "dropout {}, {} threads\n",
               preset, model->size() / 1e6, config.num_layers, batch, seq, rank, dropout, threads);
    fmt::print("saved activations: kept {:8.1f} MiB   recomputed {:7.1f} MiB ({:.1f} MiB of it layer inputs)   "
               "ratio {:.2f}x\n",
               mib(bytes_kept), mib(bytes_redo), mib(layer_inputs), (double) bytes_kept / bytes_redo);
    fmt::print("step (median of {}): kept {:.3f} s   recomputed {:.3f} s   ratio recomputed/kept {:.3f}\n", steps,
               step_kept, step_redo, step_redo / step_kept);
    fmt::print("gradients and logp bit-identical: {}\n", identical ? "yes" : "NO");
    return identical ? 0 : 1;
}
