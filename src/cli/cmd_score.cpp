// paft score: per-sequence log-probability, token count and perplexity of token sequences.
#include "cli/commands.h"
#include "cli/load_flags.h"
#include "core/error.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "core/progress.h"
#include "eval/score.h"
#include "io/fs.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/parallel.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace paft {
namespace {

using json = nlohmann::json;

// Reads JSON lines with "input_ids": [int, ...], ids in [0, vocab); errors name the file and line.
std::vector<std::vector<int32_t>> read_token_lines(const std::string & path, int vocab) {
    std::ifstream in(path);
    if (!in || !is_file(path)) {
        throw InputError(fmt::format("{}: cannot open as a file", path));
    }
    std::vector<std::vector<int32_t>> rows;
    std::string                       line;
    for (int number = 1; std::getline(in, line); number++) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) {
            continue;
        }
        json j;
        try {
            check_json_depth(line, fmt::format("{}:{}", path, number));
            j = json::parse(line);
        } catch (const json::exception &) {
            throw InputError(fmt::format("{}:{}: not valid JSON", path, number));
        }
        if (j.is_object() && j.contains("text") && !j.contains("input_ids")) {
            throw InputError(fmt::format("{}:{}: field 'text' needs a tokenizer, which this version of paft does "
                                         "not have yet; give 'input_ids'",
                                         path, number));
        }
        if (!j.is_object() || !j.contains("input_ids") || !j["input_ids"].is_array() || j["input_ids"].empty()) {
            throw InputError(fmt::format("{}:{}: expected an object with a non-empty list 'input_ids'", path, number));
        }
        std::vector<int32_t> ids;
        for (const json & v : j["input_ids"]) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab) {
                throw InputError(fmt::format("{}:{}: 'input_ids' must hold integers in [0, {}) (the model's "
                                             "vocabulary), found {}",
                                             path, number, vocab, json_snippet(v)));
            }
            ids.push_back(v.get<int32_t>());
        }
        rows.push_back(std::move(ids));
    }
    return rows;
}

std::string score_to_json_line(size_t index, const SequenceScore & s, bool per_token) {
    json j = {{"index", index}, {"tokens", s.tokens}, {"logprob", s.logprob}};
    j["perplexity"] = s.tokens > 0 ? json(s.perplexity()) : json(nullptr);
    if (per_token) {
        j["token_logprobs"] = s.token_logprobs;
    }
    return j.dump() + "\n";
}

}  // namespace

void register_score(CLI::App & app) {
    struct Options {
        std::string model, data, adapter, out;
        bool        per_token  = false;
        int         batch_size = 8;
        int         threads    = 0;
        LoadFlags   load;
    };
    auto   opt = std::make_shared<Options>();
    auto * cmd = app.add_subcommand("score", "Log-probability and perplexity of token sequences (JSON lines out)");
    cmd->add_option("--model", opt->model, "Hugging Face model directory")->required();
    cmd->add_option("--data", opt->data, "JSON lines with \"input_ids\"")->required();
    cmd->add_option("--adapter", opt->adapter, "PEFT LoRA adapter directory to apply");
    cmd->add_option("--out", opt->out, "Output file (default: standard output)");
    cmd->add_flag("--per-token", opt->per_token, "Also give each token's log-probability");
    cmd->add_option("--batch-size", opt->batch_size, "Sequences per forward pass")->capture_default_str();
    cmd->add_option("--threads", opt->threads, "Threads (default: all cores)");
    add_load_flags(*cmd, opt->load);
    cmd->callback([opt]() {
        if (opt->batch_size < 1) {
            throw InputError(fmt::format("--batch-size must be at least 1, got {}", opt->batch_size));
        }
        if (opt->threads < 0) {
            throw InputError(fmt::format("--threads must be at least 0, got {}", opt->threads));
        }
        const LoadOptions load = opt->load.options();
        check_output_apart(opt->out, "--out",
                           {{opt->data, "--data"}, {opt->model, "--model"}, {opt->adapter, "--adapter"}});
        auto model = Model::load(opt->model, load);
        auto rows  = read_token_lines(opt->data, model->config().vocab_size);
        std::unique_ptr<LoraAdapter> adapter;
        if (!opt->adapter.empty()) {
            adapter = std::make_unique<LoraAdapter>(LoraAdapter::load(opt->adapter, model->config()));
        }
        auto        backend = make_backend(opt->threads);
        ParallelTransformer transformer(*backend, model);
        // Scoring never runs a backward: keep only the layers' inputs, not every layer's
        // activations (a 7B model at 4 x 256 tokens: 0.5 GB instead of 8.6 GB), at the same cost.
        transformer.set_recompute(true);
        Progress    progress("score", (long) rows.size(), "seq");
        auto scores = score_sequences(transformer, adapter.get(), rows, opt->batch_size, opt->per_token,
                                      [&](long done) { progress.update(done); });
        progress.finish();
        double logprob = 0;
        long   tokens  = 0;
        for (const SequenceScore & score : scores) {
            logprob += score.logprob;
            tokens += score.tokens;
        }
        fmt::print(stderr, "{} sequences, {} scored tokens: {:.4f} nats/token, perplexity {:.3f}\n", scores.size(),
                   tokens, tokens ? -logprob / tokens : 0.0, tokens ? std::exp(-logprob / tokens) : 0.0);
        std::string out;
        for (size_t i = 0; i < scores.size(); i++) {
            out += score_to_json_line(i, scores[i], opt->per_token);
        }
        if (opt->out.empty()) {
            if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
                throw RuntimeFailure("cannot write the results to standard output");
            }
        } else {
            write_file_atomic(opt->out, out);
        }
    });
}

}  // namespace paft
