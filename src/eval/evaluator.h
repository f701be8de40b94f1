// Runs tasks against a LanguageModel the way lm-evaluation-harness's evaluator did at commit
// b281b09 (the Open LLM Leaderboard v1): per task, the evaluation documents are shuffled by
// random.Random seeded with 42, cut to `limit`, and the same generator then draws each
// document's few-shot examples in that order; all of a task's requests go to the model in one
// call; metrics are averaged over documents with the standard error of the mean.
#pragma once

#include "eval/language_model.h"
#include "eval/task.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace paft {

struct EvalProgress {
    size_t      task_index = 0;  // 0-based
    size_t      task_count = 0;
    std::string task;
    size_t      docs     = 0;  // documents evaluated
    size_t      requests = 0;  // requests sent to the model
    bool        done     = false;  // false: about to call the model; true: the task is scored
};


struct MetricValue {
    std::string           name;    // "acc", "acc_norm", "mc2", ...
    double                value = 0;
    std::optional<double> std_error;  // none for a single document (the harness divides by n - 1)
};

// One document's requests, the model's answers and its metric values (--log-samples).
struct DocSample {
    size_t                             doc_id = 0;  // position in the evaluation order (after the shuffle)
    std::string                        where;       // FILE:LINE of its record
    std::vector<LoglikelihoodRequest>  loglikelihood_requests;
    std::vector<Loglikelihood>         loglikelihoods;
    std::vector<GreedyRequest>         greedy_requests;
    std::vector<std::string>           generations;
    std::string                        extracted;  // Gsm8k / ExactMatch: the answer compared
    std::vector<std::pair<std::string, double>> metrics;
};

struct TaskResult {
    std::string              name;
    nlohmann::ordered_json   version;
    int                      num_fewshot = 0;
    size_t                   docs        = 0;
    std::vector<MetricValue> metrics;
    std::vector<DocSample>   samples;  // with EvalOptions::log_samples
};

struct EvalOptions {
    std::optional<int>     num_fewshot;  // overrides every task's default shot count
    std::optional<int64_t> limit;        // at most this many documents per task (after the shuffle)
    bool                   log_samples = false;  // keep every document's requests and results
    std::function<void(const EvalProgress &)> progress;
    // Resuming: `reuse(name)` may give a task's result from an earlier run (it is then not run
    // again); `on_task_done` gets every task's result as soon as it is scored.
    std::function<std::optional<TaskResult>(const std::string &)> reuse;
    std::function<void(const TaskResult &)>                         on_task_done;
};

struct EvalReport {
    std::vector<TaskResult> tasks;   // in the order run; "mmlu" (the subjects' mean) after them
    nlohmann::ordered_json  config;  // num_fewshot, limit, n-shot per task; callers add the model
};

// Loads and checks every task, then runs them. InputError for bad data or settings, before any
// request reaches the model (e.g. few-shot examples asked of
// a zero-shot task, or more than its few-shot split holds); RuntimeFailure when the model answers
// a different number of requests than it was given.
EvalReport evaluate(LanguageModel & lm, const std::vector<TaskSpec> & tasks, const EvalOptions & options);

// What evaluate() checks before the model computes anything, alone: every task loaded (its
// documents, few-shot split and settings), InputError for the first bad one. For a long run that
// evaluates at its end (paft run), before its first stage.
void check_tasks(const std::vector<TaskSpec> & tasks, std::optional<int> num_fewshot);

// The harness's aggregation of one metric: mean, and sample standard deviation / sqrt(n)
// (none when n = 1).
MetricValue mean_with_stderr(const std::string & name, const std::vector<double> & values);

// numpy.argmax: the first maximum; a NaN counts as the maximum (the first NaN wins).
size_t argmax(const std::vector<double> & values);

}  // namespace paft
