// Evaluation results as lm-evaluation-harness writes and prints them: the results JSON
// ({"results": {TASK: {METRIC: v, METRIC_stderr: se}}, "versions": {...}, "config": {...}}), its
// markdown table (Task | Version | Metric | Value | ± | Stderr), and per-document samples.
#pragma once

#include "eval/evaluator.h"

#include <nlohmann/json.hpp>

#include <string>

namespace paft {

// The results object; a standard error the harness could not compute (one document) is null.
nlohmann::ordered_json results_json(const EvalReport & report);

// Writes results_json(report) to `path` (2-space indented), atomically.
void write_results_json(const std::string & path, const EvalReport & report);

// The harness's make_table: a markdown table as pytablewriter lays it out (headers centred,
// numbers right-aligned, values with 4 decimals, each task's name and version on its first row).
std::string results_table(const EvalReport & report);

// One JSON object per evaluated document of every task (EvalOptions::log_samples): task, doc_id,
// where, the requests with the model's answers, the extracted answer and the metric values.
// Written atomically.
void write_samples_jsonl(const std::string & path, const EvalReport & report);

// One task's result as JSON and back (what `paft eval` keeps in OUT.partial to resume a run):
// metrics with their standard errors and, when logged, every document's sample. The reading side
// throws nlohmann's exceptions on a malformed object; the caller names the file.
nlohmann::ordered_json task_result_json(const TaskResult & result);
TaskResult             task_result_from_json(const nlohmann::ordered_json & json);

}  // namespace paft
