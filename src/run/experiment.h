// paft run: the PAFT paper's comparison (Table 1) from one recipe (run_recipe.h).
//
// Stages, each in its own folder under OUTPUT_DIR and recorded in OUTPUT_DIR/stages (stages.h):
//   synth                        world/: the synthetic world (only with a synth: section)
//   train/sft, train/sft-sparse, train/<pref>
//                                adapters/*: SFT alone (no L1), sparse SFT (the recipe's
//                                l1_lambda) and the preference adapter, each from the base
//   sequential/sft-<pref>, sequential/sft-sparse-<pref>
//                                sequential/*: the SFT adapter merged into the base (sft-model/),
//                                then preference training from it as its own reference (<pref>/),
//                                merged (model/): the baseline PAFT is compared with
//   merge/paft-<method>, merge/parallel-<method>
//                                merged/*: the sparse / plain SFT adapter and the preference adapter
//                                merged into the base by each listed method (the parallel models)
//   eval/<row>                   eval/<row>/: every model on the tasks (the harness's results JSON)
//                                and, with judge cases, its win rate
// then the report (report.h): report.md, results.json and the charts.
#pragma once

#include "run/run_recipe.h"
#include "run/stages.h"
#include "run/winrate.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace paft {

// One row of the comparison: a model and how it was made.
struct ComparisonRow {
    std::string              id;        // "paft-ties", "sequential-sft", "dpo", "base", ...
    std::string              group;     // "PAFT (SFT_sparse + DPO)", "Parallel SFT + DPO", ...
    std::string              label;     // "TIES", "SFT_sparse + DPO", "SFT-alone", ...
    std::string              model;     // the folder evaluated
    std::vector<std::string> adapters;  // folded into it for evaluation
};

struct RowResult {
    ComparisonRow          row;
    nlohmann::ordered_json scores = nlohmann::ordered_json::object();  // {task: {metric: value}}
    std::optional<WinRate> win_rate;
};

struct RunSummary {
    std::vector<RowResult>   rows;    // in the table's order
    std::vector<StageRecord> stages;  // in the order run
    std::string              report;  // the report's path
    std::string              table;   // the comparison as a markdown table
    double                   seconds = 0;
};

// Where everything of a run lives under its output folder.
struct RunLayout {
    explicit RunLayout(const RunRecipe & recipe);
    std::string out, base, pref;  // pref: the preference method's name ("dpo", "orpo")
    std::string adapter(const std::string & name) const { return out + "/adapters/" + name; }
    std::string sequential(const std::string & sft) const { return out + "/sequential/" + sft + "-" + pref; }
    std::string merged(const std::string & variant, const std::string & method) const {
        return out + "/merged/" + variant + "-" + method;
    }
    std::string eval(const std::string & row) const { return out + "/eval/" + row; }
};

// The rows of the comparison, in the table's order.
std::vector<ComparisonRow> comparison_rows(const RunRecipe & recipe);
// The rows the recipe's export: section names (every row by default); InputError for an unknown id.
std::vector<ComparisonRow> export_rows(const RunRecipe & recipe);

// Runs every stage, after refusing (RuntimeFailure, before anything is written) a recipe with a
// stage that cannot fit in this machine's memory (plan.h).
RunSummary run_experiment(const RunRecipe & recipe);

}  // namespace paft
