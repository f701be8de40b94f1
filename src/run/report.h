// The report of a paft run, in its output folder:
//   report.md     the comparison as the paper's Table 1 (tasks as columns, their average, and the
//                 win rate when there is a judge), the adapters' sparsity (Figure 2), the training
//                 curves, and each stage's wall time and peak memory
//   results.json  the same numbers for programs
//   sparsity.svg, sparsity.json   near-zero delta entries per module and layer of each adapter
//   curves.svg    loss, and the preference runs' reward margins and accuracies, by step
#pragma once

#include "run/experiment.h"

#include <string>
#include <utility>
#include <vector>

namespace paft {

struct ReportInputs {
    const RunRecipe &                                recipe;
    const std::vector<RowResult> &                   rows;
    const std::vector<StageRecord> &                 stages;
    double                                           seconds = 0;  // the whole run's
    std::vector<std::pair<std::string, std::string>> adapters;     // (label, PEFT folder)
    std::vector<std::pair<std::string, std::string>> curves;       // (label, metrics.jsonl)
};

// Writes the files above; returns report.md's path and puts the comparison table in `table`.
std::string write_report(const std::string & out_dir, const ReportInputs & in, std::string & table);

// The columns of the comparison: every task of the first row with results, MMLU's subjects left
// out when their mean ("mmlu") is there.
std::vector<std::string> comparison_tasks(const std::vector<RowResult> & rows);

// The metric a task's column shows: the Open LLM Leaderboard's for its tasks (acc_norm for ARC and
// HellaSwag, mc2 for TruthfulQA, acc for the others), else the task's first metric.
std::string primary_metric(const std::string & task, const nlohmann::ordered_json & metrics);

// The comparison as a markdown table: a row per model under its group's heading row, scores with
// 4 decimals, "—" where a score is missing, the average over the tasks, then the win rate.
std::string comparison_table(const std::vector<RowResult> & rows, const std::vector<std::string> & tasks);

}  // namespace paft
