// The recipe of `paft run`: the whole PAFT comparison of the paper's Table 1 from one YAML file.
//
// It is a `paft parallel` recipe (recipe.h: the base model, the shared training keys, `sft:` and
// `preference:` sections; `sft: l1_lambda` is the sparse SFT's penalty, SFT-alone is the same
// branch with none) plus three sections of its own:
//   merges:      a list of merges of the two adapters, each a `merge:` mapping (method, weights,
//                densities, lambda, t, seed); default: slerp, task_arithmetic, ties, dare_ties, linear
//   evaluation:  tasks (names or YAML task files), data_dir, num_fewshot, limit; winrate (a file of
//                judge cases: the synthetic world's judge), max_new_tokens, batch
//   export:      GGUF files for llama.cpp of some rows' models: types (f32, f16, bf16, q8_0, q4_0,
//                q4_k_m; a list or "a,b"), rows (row ids such as paft-ties, sequential-sft, base; default
//                every row): OUTPUT_DIR/gguf/ROW-TYPE.gguf
//   synth:       generate the synthetic world (synth/world.h options) into OUTPUT_DIR/world; the
//                training data, tasks and judge cases not named elsewhere default to its files
// Paths are as given (relative to the working folder), as in paft parallel and mergekit.
#pragma once

#include "gguf/gguf_model.h"
#include "merge/merge.h"
#include "synth/world.h"
#include "train/recipe.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace paft {

struct RunEvaluation {
    std::vector<std::string> tasks;          // built-in names or YAML task files
    std::string              data_dir;       // for built-in tasks
    std::optional<int>       num_fewshot;    // overrides the tasks' defaults
    std::optional<int64_t>   limit;          // documents per task at most
    std::string              winrate;        // judge cases (JSON Lines); empty: no win rate
    int                      max_new_tokens = 64;  // win rate: generated tokens per prompt at most
    int                      batch          = 8;   // generations decoded together
};

struct RunExport {
    std::vector<ExportType>  types;  // empty: no export
    std::vector<std::string> rows;   // row ids; empty: every row
};

struct RunRecipe {
    std::string                path;    // the recipe file
    ParallelOptions            train;   // model, output_dir, threads, both branches
    std::vector<MergeOptions>  merges;  // in the table's order
    RunEvaluation              evaluation;
    RunExport                  exports;
    std::optional<WorldOptions> synth;
};

// Reads and checks a recipe (export rows are checked against the table's rows when the run starts);
// InputError naming FILE:LINE and the key. `output_dir`, when given,
// replaces the recipe's. With `synth`, empty data paths, tasks and win-rate cases are filled in
// with the world's files under OUTPUT_DIR/world.
RunRecipe read_run_recipe(const std::string & path, const std::string & output_dir = "");

// The merges run when the recipe names none: the paper's five methods, each with mergekit's usual
// settings for two models (slerp t 0.5; ties and dare_ties density 0.5; linear weights 0.5 each).
std::vector<MergeOptions> default_merges();

}  // namespace paft
