// paft eval: a model (with adapters folded in) on lm-evaluation-harness tasks, with the Open LLM
// Leaderboard's semantics (harness commit b281b09): results JSON shaped like the harness's, its
// table on standard output, optionally every document's requests and answers. Under mpirun the
// requests are shared among the ranks (eval/model_lm.h) and rank 0 writes.
#include "cli/commands.h"
#include "cli/load_flags.h"
#include "core/communicator.h"
#include "core/error.h"
#include "eval/eval_progress.h"
#include "eval/evaluator.h"
#include "eval/generate.h"
#include "eval/model_lm.h"
#include "eval/results.h"
#include "eval/task_yaml.h"
#include "eval/tasks.h"
#include "io/fs.h"
#include "io/output_lock.h"
#include "io/json_depth.h"
#include "model/inference.h"

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <filesystem>
#include <memory>
#include <sstream>

namespace paft {
namespace {

struct EvalFlags {
    LoadFlags load;
    std::string              model, tasks, data_dir, out, log_samples;
    std::vector<std::string> adapters;
    std::optional<int>       num_fewshot;
    std::optional<int64_t>   limit;
    bool                     add_special_tokens = false, plain_progress = false;
    int                      max_length = 0, batch = 8, threads = 0;
};

// Names (built-ins, aliases, hendrycksTest-SUBJECT) and YAML files, in the order given.
std::vector<TaskSpec> task_specs(const EvalFlags & f) {
    std::vector<std::string> names;
    for (size_t start = 0; start <= f.tasks.size();) {
        const size_t end  = std::min(f.tasks.find(',', start), f.tasks.size());
        std::string  name = f.tasks.substr(start, end - start);
        if (!name.empty()) {
            names.push_back(name);
        }
        start = end + 1;
    }
    if (names.empty()) {
        throw InputError("--tasks: give at least one task (e.g. arc_challenge,hellaswag or leaderboard)");
    }
    return resolve_task_list(names, f.data_dir);
}

std::string model_args(const EvalFlags & f) {
    std::string args = "pretrained=" + f.model;
    for (const std::string & a : f.adapters) {
        args += ",peft=" + a;
    }
    return args;
}

// What must not change between a run and its resumption.
nlohmann::ordered_json run_fingerprint(const EvalFlags & f) {
    return {{"model", f.model},
            {"adapters", f.adapters},
            {"tasks", f.tasks},
            {"data_dir", f.data_dir},
            {"num_fewshot", f.num_fewshot ? nlohmann::ordered_json(*f.num_fewshot) : nlohmann::ordered_json()},
            {"limit", f.limit ? nlohmann::ordered_json(*f.limit) : nlohmann::ordered_json()},
            {"add_special_tokens", f.add_special_tokens},
            {"max_length", f.max_length},
            {"log_samples", !f.log_samples.empty()}};
}

// OUT.partial: the run's fingerprint on the first line, then one line per finished task. A run
// that finds one with the same fingerprint takes the finished tasks from it; the file goes away
// once the results are written. Each line is flushed as it is written, so a killed run loses at
// most the task it was running. Under MPI rank 0 reads and writes the file; every rank learns
// what it held.
class EvalResume {
public:
    EvalResume(std::string path, nlohmann::ordered_json fingerprint, Communicator & ranks) : path_(std::move(path)) {
        std::string text;
        if (ranks.rank() == 0 && path_exists(path_)) {
            text = read_file(path_);
        }
        ranks.broadcast(text, 0);
        check_json_depth(text, path_);
        std::istringstream in(text);
        std::string        line;
        if (std::getline(in, line)) {
            nlohmann::ordered_json first = nlohmann::ordered_json::parse(line, nullptr, false);
            if (first.is_discarded() || first != fingerprint) {
                throw InputError(fmt::format("{}: left by a run with other settings (model, tasks, data, shots, "
                                             "limit, ...); delete it to start over",
                                             path_));
            }
            for (int number = 2; std::getline(in, line); number++) {
                nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, false);
                if (j.is_discarded()) {
                    break;  // the last line of a killed run may be cut short
                }
                try {
                    TaskResult t = task_result_from_json(j);
                    done_.emplace(t.name, std::move(t));
                } catch (const nlohmann::json::exception & e) {
                    throw InputError(fmt::format("{}:{}: not a task result ({}); delete the file to start over",
                                                 path_, number, e.what()));
                }
            }
        }
        writer_      = ranks.rank() == 0;
        fingerprint_ = std::move(fingerprint);
        if (writer_ && !text.empty()) {
            open();  // rewritten with what was read: a cut last line must not stay in front of the new ones
        }
        if (writer_ && !done_.empty()) {
            std::fprintf(stderr, "resuming from %s: %zu finished task(s) reused\n", path_.c_str(), done_.size());
        }
    }
    ~EvalResume() {
        if (out_) {
            std::fclose(out_);
        }
    }

    std::optional<TaskResult> reuse(const std::string & task) const {
        const auto it = done_.find(task);
        return it == done_.end() ? std::nullopt : std::optional<TaskResult>(it->second);
    }
    // A task's result, as soon as it is scored. The file is made then, not before: a run that
    // stops before its first task leaves none.
    void add(const TaskResult & result) {
        if (!writer_) {
            return;
        }
        if (!out_) {
            open();
        }
        write_line(task_result_json(result));
    }
    // The results are written: the partial file is no longer needed.
    void finish() {
        if (!out_) {
            return;
        }
        std::fclose(out_);
        out_ = nullptr;
        std::filesystem::remove(path_);
    }

private:
    std::string                       path_;
    nlohmann::ordered_json            fingerprint_;
    std::map<std::string, TaskResult> done_;
    std::FILE *                       out_    = nullptr;
    bool                              writer_ = false;  // rank 0

    void open() {
        out_ = std::fopen(path_.c_str(), "w");
        if (!out_) {
            throw RuntimeFailure(fmt::format("cannot write {}", path_));
        }
        write_line(fingerprint_);
        for (const auto & [name, result] : done_) {
            write_line(task_result_json(result));
        }
    }

    void write_line(const nlohmann::ordered_json & j) {
        const std::string text = j.dump() + "\n";
        if (std::fwrite(text.data(), 1, text.size(), out_) != text.size() || std::fflush(out_) != 0) {
            throw RuntimeFailure(fmt::format("cannot write {}", path_));
        }
    }
};

void run_eval(const EvalFlags & f) {
    if (f.num_fewshot && *f.num_fewshot < 0) {
        throw InputError("--num-fewshot must be >= 0");
    }
    if (f.limit && *f.limit <= 0) {
        throw InputError("--limit must be positive");
    }
    if (f.batch <= 0) {
        throw InputError("--batch must be positive");
    }
    const std::vector<TaskSpec> specs = task_specs(f);
    std::vector<NamedPath>      inputs    = {{f.model, "--model"}, {f.data_dir, "--data-dir"}};
    for (const std::string & a : f.adapters) {
        inputs.push_back({a, "--adapter"});
    }
    for (const TaskSpec & spec : specs) {
        if (spec.custom) {
            inputs.push_back({spec.custom->file, "--tasks"});
            inputs.push_back({spec.custom->dataset_path, spec.custom->file + ": dataset_path"});
        }
    }
    check_output_apart(f.out, "--out", inputs);
    if (!f.out.empty() && is_folder(f.out)) {
        throw InputError(fmt::format("--out {} is a folder: name the results file (e.g. {}/results.json)", f.out, f.out));
    }
    check_output_apart(f.out.empty() ? "" : f.out + ".partial", "--out's partial file", inputs);
    check_output_apart(f.log_samples, "--log-samples", inputs);
    const Tokenizer             tokenizer = Tokenizer::load(f.model);
    auto                        model     = load_model_with_adapters(f.model, f.adapters, f.load.options());
    auto                        backend   = make_backend(f.threads);

    EvalProgressBars bars("", f.plain_progress);
    ModelLmOptions   lm_options;
    lm_options.add_special_tokens = f.add_special_tokens;
    lm_options.max_length         = f.max_length;
    lm_options.generation_batch   = f.batch;
    lm_options.eos_ids            = model_eos_ids(f.model, tokenizer);
    lm_options.on_progress        = bars.on_requests();
    lm_options.ranks              = &world();
    ModelLanguageModel lm(*backend, model, tokenizer, lm_options);

    EvalOptions options;
    options.num_fewshot = f.num_fewshot;
    options.limit       = f.limit;
    options.log_samples = !f.log_samples.empty();
    options.progress    = bars.on_task();
    std::optional<OutputLock>   lock;  // rank 0 writes --out and its partial file
    if (!f.out.empty() && world().rank() == 0) {
        lock.emplace(f.out, LockPlace::beside);
    }
    std::unique_ptr<EvalResume> resume;
    if (!f.out.empty()) {
        resume = std::make_unique<EvalResume>(f.out + ".partial", run_fingerprint(f), world());
        options.reuse        = [&](const std::string & task) { return resume->reuse(task); };
        options.on_task_done = [&](const TaskResult & result) { resume->add(result); };
    }
    EvalReport report = evaluate(lm, specs, options);

    report.config["model"]              = "paft";
    report.config["model_args"]         = model_args(f);
    report.config["batch_size"]         = 1;
    report.config["device"]             = "cpu";
    report.config["no_cache"]           = true;
    report.config["bootstrap_iters"]    = 100000;
    report.config["description_dict"]   = nlohmann::ordered_json::object();
    report.config["add_special_tokens"] = f.add_special_tokens;
    report.config["max_length"]         = lm.max_length();
    if (world().rank() != 0) {  // rank 0 writes and reports
        return;
    }
    const ScoringStats & stats          = lm.stats();
    if (stats.requests > 0) {
        std::fprintf(stderr, "scored %ld requests: %ld tokens as the harness runs them, %ld computed (shared prefixes once)\n",
                     stats.requests, stats.request_tokens, stats.computed_tokens);
    }
    if (!f.out.empty()) {
        write_results_json(f.out, report);
    }
    if (!f.log_samples.empty()) {
        write_samples_jsonl(f.log_samples, report);
    }
    if (resume) {
        resume->finish();
    }
    std::fputs(results_table(report).c_str(), stdout);
    if (!f.out.empty()) {
        std::fprintf(stderr, "results written to %s\n", f.out.c_str());
    }
}

}  // namespace

void register_eval(CLI::App & app) {
    auto   flags = std::make_shared<EvalFlags>();
    auto * cmd   = app.add_subcommand("eval", "Evaluate a model on lm-evaluation-harness tasks (Open LLM Leaderboard "
                                              "semantics: harness commit b281b09)");
    cmd->add_option("--model", flags->model, "Hugging Face model folder (config.json, safetensors, tokenizer)")
        ->required();
    cmd->add_option("--adapter", flags->adapters, "PEFT LoRA adapter folder, applied to the base unfused (repeatable)");
    cmd->add_option("--tasks", flags->tasks,
                    "comma-separated tasks: arc_challenge, arc_easy, hellaswag, mmlu, hendrycksTest-SUBJECT, "
                    "truthfulqa_mc, winogrande, gsm8k, leaderboard, or FILE.yaml (a custom task)")
        ->required();
    cmd->add_option("--data-dir", flags->data_dir, "folder with DATASET/SPLIT.jsonl files for the built-in tasks");
    cmd->add_option("--num-fewshot", flags->num_fewshot, "few-shot examples for every task (default: the leaderboard's)");
    cmd->add_option("--limit", flags->limit, "evaluate at most N documents per task (after the harness's shuffle)");
    cmd->add_option("--out", flags->out, "write the results JSON here (the harness's shape)");
    cmd->add_option("--log-samples", flags->log_samples, "write every document's requests and answers here (JSON lines)");
    cmd->add_flag("--add-special-tokens", flags->add_special_tokens,
                  "encode contexts with the tokenizer's special tokens (BOS), as the current harness can; the "
                  "leaderboard's commit did not");
    cmd->add_option("--max-length", flags->max_length, "tokens the model sees at most (default: max_position_embeddings)");
    cmd->add_option("--batch", flags->batch, "generation tasks: contexts decoded together");
    cmd->add_option("--threads", flags->threads, "threads (default: all cores)");
    add_load_flags(*cmd, flags->load);
    cmd->add_flag("--plain-progress", flags->plain_progress, "progress as plain lines even on a terminal");
    cmd->callback([flags] { run_eval(*flags); });
}

}  // namespace paft
