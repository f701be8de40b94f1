// Benchmark: the Decoder's prefill and decoding speed on a random model.
//
//   prefill: one sequence of --context tokens in one call (logits of the last token only, as a
//            scoring context), next to the Transformer's forward of the same tokens (logits of
//            every position), the path scoring took before the Decoder;
//   decode:  --batch sequences, each prefilled with --prompt tokens, then --steps calls of one
//            new token per sequence (the batched products of generation); also one sequence alone.
// Median of --repeats runs for each.
//
//   build/bench-inference --preset llama-120m --context 1000 --batch 8 --steps 16 --threads 2
#include "core/backend.h"
#include "core/random.h"
#include "model/batch.h"
#include "model/inference.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/transformer.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <vector>

using namespace paft;

namespace {

// The median over `repeats` runs of what `run` measures, in seconds.
double median_seconds(int repeats, const std::function<double()> & run) {
    std::vector<double> times;
    for (int r = 0; r < repeats; r++) {
        times.push_back(run());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

double seconds_of(const std::function<void()> & run) {
    double t0 = now_s();
    run();
    return now_s() - t0;
}

// Seconds per decoding step of `batch` sequences after a prompt of `prompt` tokens each.
double decode_step_seconds(Decoder & decoder, const ModelConfig & config, const std::vector<int32_t> & tokens,
                           int batch, int prompt, int steps) {
    std::vector<KvCache>       caches(batch, KvCache(config, prompt + steps));
    std::vector<SequenceInput> inputs(batch);
    for (int b = 0; b < batch; b++) {
        inputs[b] = {nullptr, &caches[b], std::span<const int32_t>(tokens).first(prompt), false};
    }
    decoder.forward(inputs);
    double t0 = now_s();
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < batch; b++) {
            inputs[b].tokens = std::span<const int32_t>(tokens).subspan(prompt + s, 1);
        }
        decoder.forward(inputs);
    }
    return (now_s() - t0) / steps;
}

}  // namespace

int main(int argc, char ** argv) {
    std::string preset = "llama-120m";
    int         context = 1000, batch = 8, prompt = 128, steps = 16, repeats = 3, threads = 2;
    CLI::App    app{"Decoder prefill and decoding speed"};
    app.add_option("--preset", preset, "tiny, llama-20m, llama-120m")->capture_default_str();
    app.add_option("--context", context, "prefill tokens")->capture_default_str();
    app.add_option("--batch", batch, "sequences decoded together")->capture_default_str();
    app.add_option("--prompt", prompt, "tokens before decoding")->capture_default_str();
    app.add_option("--steps", steps, "decoding steps")->capture_default_str();
    app.add_option("--repeats", repeats)->capture_default_str();
    app.add_option("--threads", threads)->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    const ModelConfig config  = model_preset(preset);
    auto              model   = Model::random(config, 1);
    auto              backend = make_backend(threads);
    Random            rng(7);
    std::vector<int32_t> tokens(std::max(context, prompt + steps));
    for (int32_t & id : tokens) {
        id = (int32_t) (rng.next_u64() % config.vocab_size);
    }
    fmt::print("{}: {} parameters, {} threads, load average {}\n", preset, model->size(), backend->threads(),
               load_average());

    Decoder decoder(*backend, model);
    KvCache cache(config, context);
    double  prefill = median_seconds(repeats, [&] {
        cache.truncate(0);
        SequenceInput in{nullptr, &cache, std::span<const int32_t>(tokens).first(context), false};
        return seconds_of([&] { decoder.forward({&in, 1}); });
    });
    Transformer transformer(*backend, model);
    Batch       b = batch_from_rows({std::vector<int32_t>(tokens.begin(), tokens.begin() + context)}, nullptr, 0, false,
                                    config.vocab_size);
    double whole = median_seconds(repeats, [&] { return seconds_of([&] { transformer.forward(b, nullptr); }); });
    fmt::print("prefill {} tokens: Decoder {:.2f} s ({:.0f} tokens/s), Transformer forward {:.2f} s "
               "({:.0f} tokens/s)\n", context, prefill, context / prefill, whole, context / whole);

    for (int n : {1, batch}) {
        double step =
            median_seconds(repeats, [&] { return decode_step_seconds(decoder, config, tokens, n, prompt, steps); });
        fmt::print("decode, {} sequence(s) after {} tokens: {:.1f} ms per step, {:.1f} tokens/s\n", n, prompt,
                   step * 1e3, n / step);
    }
    fmt::print("KV cache of {} positions: {:.1f} MiB\n", context, cache.bytes() / (1024.0 * 1024.0));
    return 0;
}
