#include "run/experiment.h"

#include "core/backend.h"
#include "core/communicator.h"
#include "core/error.h"
#include "eval/eval_progress.h"
#include "eval/evaluator.h"
#include "eval/generate.h"
#include "eval/model_lm.h"
#include "eval/results.h"
#include "eval/task_yaml.h"
#include "gguf/export.h"
#include "io/fs.h"
#include "io/output_lock.h"
#include "merge/config.h"
#include "model/config.h"
#include "model/inference.h"
#include "run/plan.h"
#include "run/report.h"
#include "train/pipeline.h"
#include "train/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <memory>

namespace paft {
namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

std::string upper(std::string s) {
    for (char & c : s) {
        c = (char) std::toupper((unsigned char) c);
    }
    return s;
}

// mergekit's names as the paper's table writes them.
std::string method_title(const std::string & method) {
    if (method == "slerp") return "SLERP";
    if (method == "task_arithmetic") return "Task Arithmetic";
    if (method == "ties") return "TIES";
    if (method == "dare_ties") return "DARE TIES";
    if (method == "linear") return "Linear";
    return method;
}

// Decoding a small model token by token is a chain of tiny products: below about ten million
// parameters the threads' fork and join at every step cost more than they save (and far more on a
// loaded machine, where a waiting thread loses its core), so such models decode on one thread.
constexpr size_t kSmallModelParameters = 10'000'000;

class Experiment {
public:
    explicit Experiment(const RunRecipe & r) :
        r_(r),
        threads_(r.train.threads),
        stages_(r.train.output_dir + "/stages", stage_count(r), world()),
        L_(r) {}

    RunSummary run() {
        const auto t0 = std::chrono::steady_clock::now();
        // A run that fails before any stage is done leaves nothing: the folder it made goes (after
        // the lock). Once a stage is done the folder stays, for the next run to reuse it.
        struct FolderOfTheRun {
            const std::string & dir;
            const StageRunner & stages;
            bool                made = false, finished = false;
            ~FolderOfTheRun() {
                if (made && !finished && stages.records().empty() && world().rank() == 0) {
                    std::error_code ec;
                    fs::remove_all(dir, ec);
                }
            }
        } folder{L_.out, stages_, !path_exists(L_.out)};
        std::optional<OutputLock> lock;  // the run's folder is this run's while it writes (rank 0 writes)
        if (rank0()) {
            lock.emplace(L_.out);
        }
        make_dirs(L_.out);
        copy_recipe();
        synth();
        const std::string pref_title = upper(L_.pref);
        base_fp_ = folder_fingerprint(L_.base);

        TrainOptions sft = r_.train.sft, sparse = r_.train.sft, pref = r_.train.preference;
        sft.l1_lambda = 0;
        train("sft", sft);
        train("sft-sparse", sparse);
        train(L_.pref, pref);
        base_.reset();  // merging streams from disk; the sequential runs take their own copy
        for (const char * variant : {"paft", "parallel"}) {
            for (const MergeOptions & m : r_.merges) {
                merge(variant, m);
            }
        }
        sequential("sft");
        sequential("sft-sparse");

        RunSummary s;
        for (const ComparisonRow & row : comparison_rows(r_)) {
            s.rows.push_back(evaluate_row(row));
        }
        for (const ComparisonRow & row : export_rows(r_)) {
            for (ExportType type : r_.exports.types) export_gguf_file(row, type);
        }
        s.stages  = stages_.records();
        s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ReportInputs in{r_, s.rows, s.stages, s.seconds, adapters_for_sparsity(pref_title), curves(pref_title)};
        if (rank0()) {
            s.report = write_report(L_.out, in, s.table);
        }
        folder.finished = true;
        return s;
    }

private:
    static int stage_count(const RunRecipe & r) {
        const int merges = 2 * (int) r.merges.size();
        const int rows   = merges + 2 + 3 + 1;  // merged, sequential, individual, base
        const int exports = (int) r.exports.types.size() * (r.exports.rows.empty() ? rows : (int) r.exports.rows.size());
        return (r.synth ? 1 : 0) + 3 + merges + 2 + rows + exports;
    }

    // The base, loaded once for the training stages that run (none when all are reused).
    std::shared_ptr<const Model> base_model() {
        if (!base_) {
            base_ = Model::load(L_.base, r_.train.sft.load_options());
        }
        return base_;
    }

    void copy_recipe() const {
        if (rank0()) {
            write_file_atomic(L_.out + "/recipe.yaml", read_file(r_.path));
        }
    }

    // Under mpirun: rank 0 writes the run's files; the trainings and evaluations are shared.
    static bool rank0() { return world().rank() == 0; }

    // The stage fingerprint's shared part: the synthetic world's, when the data comes from it.
    ordered_json upstream() const { return {{"synth", synth_fp_}}; }

    void synth() {
        if (!r_.synth) {
            return;
        }
        const WorldOptions & w   = *r_.synth;
        const std::string    dir = L_.out + "/world";
        ordered_json in = {{"seed", w.seed},           {"people", w.people},
                           {"heldout_people", w.heldout_people}, {"corpus_docs", w.corpus_docs},
                           {"sft_examples", w.sft_examples},     {"pref_examples", w.pref_examples},
                           {"judge_prompts", w.judge_prompts},   {"vocab_size", w.vocab_size}};
        synth_fp_ = stages_.run("synth", in, {dir}, [&](StageRecord &) { write_world(dir, w); }, StageRanks::first)
                        .fingerprint;
    }

    ordered_json train_inputs(const TrainOptions & o, const std::string & model_fp) const {
        return {{"recipe", recipe_yaml(o)}, {"data", file_fingerprint(o.train_data)}, {"model", model_fp},
                {"upstream", upstream()}};
    }

    void train_adapter(StageRecord & rec, std::shared_ptr<const Model> model, const TrainOptions & o,
                       const std::string & label) const {
        auto         backend = make_backend(threads_);
        TrainData    data    = load_train_data(o, model->config());
        Trainer      trainer(*backend, std::move(model), o, std::move(data), backend->threads(), &world());
        trainer.set_label(label);
        TrainSummary t = trainer.run();
        rec.info       = {{"steps", t.global_step},
                          {"tokens", t.tokens},
                          {"train_seconds", t.seconds},
                          {"tokens_per_second", t.seconds > 0 ? t.tokens / t.seconds : 0.0},
                          {"last_loss", t.last_loss},
                          {"resumed", t.resumed}};
    }

    void train(const std::string & name, TrainOptions o) {
        o.output_dir = L_.adapter(name);
        const StageRecord rec = stages_.run("train/" + name, train_inputs(o, base_fp_), {o.output_dir},
                                            [&](StageRecord & r) { train_adapter(r, base_model(), o, name); });
        adapter_fp_[name] = rec.fingerprint;
    }

    // SFT merged into the base, then preference training from that model (its own reference).
    void sequential(const std::string & sft_name) {
        const std::string dir = L_.sequential(sft_name);
        TrainOptions      o   = r_.train.preference;
        o.model               = dir + "/sft-model";
        o.output_dir          = dir + "/" + L_.pref;
        if (o.tokenizer.empty()) {
            o.tokenizer = L_.base;
        }
        ordered_json in = train_inputs(o, base_fp_);
        in["sft"]       = adapter_fp_.at(sft_name);
        const StageRecord rec = stages_.run("sequential/" + sft_name + "-" + L_.pref, in, {dir}, [&](StageRecord & r) {
            auto model = Model::load(L_.base, r_.train.sft.load_options());
            fold_lora_adapter(*model, LoraAdapter::load(L_.adapter(sft_name), model->config()));
            if (rank0()) {
                save_model_dir(*model, L_.base, o.model);
            }
            world().barrier();  // the preference stage's base is on disk before any rank trains from it
            train_adapter(r, model, o, "seq-" + L_.pref);
            if (rank0()) {
                fold_lora_adapter(*model, LoraAdapter::load(o.output_dir, model->config()));
                save_model_dir(*model, L_.base, dir + "/model");
            }
        });
        model_fp_["sequential-" + sft_name] = rec.fingerprint;
    }

    void merge(const std::string & variant, const MergeOptions & m) {
        const std::string sft = variant == "paft" ? "sft-sparse" : "sft";
        MergeRunOptions   run;
        run.out            = L_.merged(variant, m.method);
        run.threads        = threads_;
        run.seed           = m.seed;
        run.plain_progress = true;
        run.overwrite      = true;
        const MergeConfig config = adapter_merge_config(L_.base, {L_.adapter(sft), L_.adapter(L_.pref)}, m);
        ordered_json      in     = {{"method", m.method},
                                    {"weights", m.weights},
                                    {"densities", m.densities},
                                    {"normalize", m.normalize},
                                    {"lambda", m.lambda},
                                    {"t", m.t ? ordered_json(*m.t) : ordered_json()},
                                    {"seed", m.seed},
                                    {"rescale", m.rescale},
                                    {"base", base_fp_},
                                    {"sft", adapter_fp_.at(sft)},
                                    {"preference", adapter_fp_.at(L_.pref)}};
        const StageRecord rec = stages_.run("merge/" + variant + "-" + m.method, in, {run.out}, [&](StageRecord & r) {
            const MergeReport report = run_merge(config, run);
            r.info = {{"tensors", report.tensors}, {"merged", report.merged}, {"bytes", report.bytes_out}};
        }, StageRanks::first);
        model_fp_[variant + "-" + m.method] = rec.fingerprint;
    }

    // A row's model (its adapters folded in) as a GGUF file for llama.cpp: gguf/ROW-TYPE.gguf.
    void export_gguf_file(const ComparisonRow & row, ExportType type) {
        GgufExportOptions o;
        o.model_dir = row.model;
        o.adapters  = row.adapters;
        o.type      = type;
        o.out       = L_.out + "/gguf/" + row.id + "-" + export_type_name(type) + ".gguf";
        o.threads   = threads_;
        o.overwrite = true;  // a stage redone replaces its file
        o.progress  = false;
        o.name      = row.id;
        const ordered_json in = {{"model", row.model}, {"adapters", row.adapters}, {"made_from", row_model_fp(row)},
                                 {"type", export_type_name(type)}};
        stages_.run("export/" + row.id + "-" + export_type_name(type), in, {o.out}, [&](StageRecord & r) {
            make_dirs(L_.out + "/gguf");
            const GgufExportReport report = export_gguf(o);
            r.info = {{"file", o.out}, {"bytes", report.bytes}, {"tensors", report.tensors}};
        }, StageRanks::first);
    }

    // What a row's model was made from.
    std::string row_model_fp(const ComparisonRow & row) const {
        if (auto it = model_fp_.find(row.id); it != model_fp_.end()) {
            return it->second;
        }
        if (auto it = adapter_fp_.find(row.id); it != adapter_fp_.end()) {
            return it->second;
        }
        return base_fp_;
    }

    ordered_json eval_inputs(const ComparisonRow & row) const {
        const RunEvaluation & e = r_.evaluation;
        ordered_json          tasks = ordered_json::array();
        for (const std::string & t : e.tasks) {
            tasks.push_back(is_yaml_task_file(t) ? ordered_json{t, file_fingerprint(t)} : ordered_json(t));
        }
        return {{"model", row.model},
                {"adapters", row.adapters},
                {"made_from", row_model_fp(row)},
                {"tasks", tasks},
                {"data_dir", e.data_dir},
                {"num_fewshot", e.num_fewshot ? ordered_json(*e.num_fewshot) : ordered_json()},
                {"limit", e.limit ? ordered_json(*e.limit) : ordered_json()},
                {"winrate", e.winrate.empty() ? "" : file_fingerprint(e.winrate)},
                {"max_new_tokens", e.max_new_tokens},
                {"upstream", upstream()}};
    }

    RowResult evaluate_row(const ComparisonRow & row) {
        const std::string dir = L_.eval(row.id);
        RowResult         result{row, ordered_json::object(), std::nullopt};
        const StageRecord rec = stages_.run("eval/" + row.id, eval_inputs(row), {dir},
                                            [&](StageRecord & r) { r.info = run_evaluation(row, dir); });
        result.scores = rec.info.value("scores", ordered_json::object());
        if (rec.info.contains("win_rate")) {
            const ordered_json & w = rec.info["win_rate"];
            WinRate              wr;
            wr.win_rate  = w.value("win_rate", 0.0);
            wr.std_error = w.value("std_error", 0.0);
            wr.cases     = w.value("cases", (size_t) 0);
            wr.wins      = w.value("wins", (size_t) 0);
            wr.ties      = w.value("ties", (size_t) 0);
            result.win_rate = wr;
        }
        return result;
    }

    int decoding_threads(const Model & model) const {
        return model.size() < kSmallModelParameters ? 1 : threads_;
    }

    // The tasks (and the win rate) of one model; returns the stage's info.
    ordered_json run_evaluation(const ComparisonRow & row, const std::string & dir) const {
        const RunEvaluation & e         = r_.evaluation;
        const auto            specs     = resolve_task_list(e.tasks, e.data_dir);
        const Tokenizer       tokenizer = Tokenizer::load(L_.base);
        // Rows on the base load it as the trainings did (their adapters were trained on that base);
        // merged models are read as stored.
        const LoadOptions     load  = row.model == L_.base ? r_.train.sft.load_options() : LoadOptions{};
        auto                  model = load_model_with_adapters(row.model, row.adapters, load);
        auto                  backend   = make_backend(decoding_threads(*model.model));
        make_dirs(dir);

        EvalProgressBars bars(row.id + " ", false);
        ModelLmOptions   lm_options;
        lm_options.generation_batch = e.batch;
        lm_options.eos_ids          = model_eos_ids(L_.base, tokenizer);
        lm_options.on_progress      = bars.on_requests();
        lm_options.ranks            = &world();
        ModelLanguageModel lm(*backend, model, tokenizer, lm_options);
        EvalOptions        options;
        options.num_fewshot = e.num_fewshot;
        options.limit       = e.limit;
        options.progress    = bars.on_task();
        EvalReport report           = evaluate(lm, specs, options);
        report.config["model"]      = "paft";
        report.config["model_args"] = fmt::format("pretrained={}{}", row.model,
                                                  row.adapters.empty() ? "" : ",peft=" + row.adapters.front());
        if (rank0()) {
            write_results_json(dir + "/results.json", report);
        }
        ordered_json info = {{"scores", results_json(report)["results"]}};

        if (!e.winrate.empty()) {
            const std::vector<JudgeCase> cases = read_judge_cases(e.winrate);
            const auto                   chat  = choose_chat_template("", tokenizer, L_.base);
            const ExampleEncoder         encoder(tokenizer, chat ? &*chat : nullptr, DataOptions{});
            Decoder                      decoder(*backend, model);
            WinRateOptions               w{e.max_new_tokens, e.batch, lm_options.eos_ids};
            std::vector<JudgedAnswer>    answers;
            const WinRate                rate = measure_win_rate(decoder, tokenizer, encoder, cases, w, answers, &world());
            std::string                  lines;
            for (size_t i = 0; i < cases.size(); i++) {
                lines += ordered_json{{"prompt", cases[i].prompt},     {"answer", cases[i].answer},
                                      {"reference", cases[i].reference}, {"response", answers[i].response},
                                      {"score", answers[i].score},       {"outcome", answers[i].outcome}}
                             .dump() +
                         "\n";
            }
            info["win_rate"] = {{"win_rate", rate.win_rate}, {"std_error", rate.std_error}, {"cases", rate.cases},
                                {"wins", rate.wins},         {"ties", rate.ties}};
            if (rank0()) {
                write_file_atomic(dir + "/winrate_answers.jsonl", lines);
                write_file_atomic(dir + "/winrate.json", info["win_rate"].dump(2) + "\n");
            }
        }
        return info;
    }

    std::vector<std::pair<std::string, std::string>> adapters_for_sparsity(const std::string & pref) const {
        return {{"SFT", L_.adapter("sft")}, {"SFT_sparse", L_.adapter("sft-sparse")}, {pref, L_.adapter(L_.pref)}};
    }

    std::vector<std::pair<std::string, std::string>> curves(const std::string & pref) const {
        return {{"SFT", L_.adapter("sft") + "/metrics.jsonl"},
                {"SFT_sparse", L_.adapter("sft-sparse") + "/metrics.jsonl"},
                {pref, L_.adapter(L_.pref) + "/metrics.jsonl"},
                {"SFT -> " + pref, L_.sequential("sft") + "/" + L_.pref + "/metrics.jsonl"},
                {"SFT_sparse -> " + pref, L_.sequential("sft-sparse") + "/" + L_.pref + "/metrics.jsonl"}};
    }

    const RunRecipe &                  r_;
    int                                threads_;
    StageRunner                        stages_;
    RunLayout                          L_;
    std::shared_ptr<const Model>       base_;
    std::string                        base_fp_, synth_fp_;
    std::map<std::string, std::string> adapter_fp_, model_fp_;
};

}  // namespace

RunLayout::RunLayout(const RunRecipe & r) :
    out(r.train.output_dir), base(r.train.sft.model), pref(method_name(r.train.preference.method)) {}

std::vector<ComparisonRow> comparison_rows(const RunRecipe & recipe) {
    const RunLayout            L(recipe);
    const std::string          pref       = upper(L.pref);
    const std::string          paft_group = "PAFT (SFT_sparse + " + pref + ")";
    const std::string          par_group  = "Parallel SFT + " + pref;
    std::vector<ComparisonRow> rows;
    for (const auto & [variant, group] : {std::pair{"paft", paft_group}, {"parallel", par_group}}) {
        for (const MergeOptions & m : recipe.merges) {
            rows.push_back({std::string(variant) + "-" + m.method, group, method_title(m.method),
                            L.merged(variant, m.method), {}});
        }
    }
    rows.push_back(
        {"sequential-sft-sparse", "Sequential", "SFT_sparse + " + pref, L.sequential("sft-sparse") + "/model", {}});
    rows.push_back({"sequential-sft", "Sequential", "SFT + " + pref, L.sequential("sft") + "/model", {}});
    rows.push_back({"sft-sparse", "Individual", "SFT_sparse-alone", L.base, {L.adapter("sft-sparse")}});
    rows.push_back({"sft", "Individual", "SFT-alone", L.base, {L.adapter("sft")}});
    rows.push_back({L.pref, "Individual", pref + "-alone", L.base, {L.adapter(L.pref)}});
    rows.push_back({"base", "Base", fs::path(L.base).filename().string(), L.base, {}});
    return rows;
}

std::vector<ComparisonRow> export_rows(const RunRecipe & recipe) {
    const std::vector<ComparisonRow> all = comparison_rows(recipe);
    if (recipe.exports.rows.empty()) return all;
    std::vector<ComparisonRow> chosen;
    for (const std::string & id : recipe.exports.rows) {
        auto it = std::find_if(all.begin(), all.end(), [&](const ComparisonRow & row) { return row.id == id; });
        if (it == all.end()) {
            std::string ids;
            for (const ComparisonRow & row : all) ids += (ids.empty() ? "" : ", ") + row.id;
            throw InputError(fmt::format("{}: export: rows: no row '{}' (rows: {})", recipe.path, id, ids));
        }
        chosen.push_back(*it);
    }
    return chosen;
}

namespace {

// Every file the stages will read, checked before the first stage: a missing dataset, task file
// or judge file fails now, not after the trainings and merges (mergekit's weakness). Files of the
// synth: section's world are made by its stage, so only their absence from the recipe is checked.
void check_run_inputs(const RunRecipe & r) {
    const std::string world = r.train.output_dir + "/world/";
    auto made_by_synth      = [&](const std::string & path) { return r.synth && path.rfind(world, 0) == 0; };
    load_model_config(r.train.sft.model);
    for (const auto & [path, what] : {std::pair{r.train.sft.train_data, "sft: train_data"},
                                      {r.train.preference.train_data, "preference: train_data"}}) {
        if (!made_by_synth(path) && !is_file(path)) {
            throw InputError(fmt::format("{}: {}: {} is not a file", r.path, what, path));
        }
    }
    std::vector<std::string> tasks;
    for (const std::string & t : r.evaluation.tasks) {
        if (!made_by_synth(t)) {
            tasks.push_back(t);
        }
    }
    try {
        check_tasks(resolve_task_list(tasks, r.evaluation.data_dir), r.evaluation.num_fewshot);
        if (!r.evaluation.winrate.empty() && !made_by_synth(r.evaluation.winrate)) {
            read_judge_cases(r.evaluation.winrate);
        }
    } catch (const InputError & e) {
        throw InputError(fmt::format("{}: evaluation: {}", r.path, e.what()));
    }
}

}  // namespace

RunSummary run_experiment(const RunRecipe & recipe) {
    if (recipe.train.preference.model != recipe.train.sft.model) {
        throw InputError(fmt::format("{}: both branches start from the same base model ('{}' and '{}')", recipe.path,
                                     recipe.train.sft.model, recipe.train.preference.model));
    }
    check_plan_fits(plan_run(recipe));  // an unknown export row or a stage too large fails before any work
    check_run_inputs(recipe);
    Experiment experiment(recipe);
    return experiment.run();
}

}  // namespace paft
