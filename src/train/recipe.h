// Training recipes (YAML) and command-line flags. One table of option keys, named as Hugging
// Face's TrainingArguments, TRL's configs, PEFT and the alignment-handbook's recipes name them,
// serves both: each key has a setter from text and a getter to text, so a recipe line
// `learning_rate: 2.0e-5` and the flag `--learning-rate 2.0e-5` go through the same code and fail
// with the same message (prefixed by FILE:LINE: KEY, or by the flag).
//
// Precedence: the method's defaults (TrainOptions::defaults) < the recipe (--config) < flags.
//
// A recipe for `paft sft|dpo|orpo` is a mapping of keys to values. Keys that only one method uses
// (beta, loss_type, packing, l1_lambda, ...) are errors in another method's recipe, so a DPO
// setting is never silently dropped from an SFT run. A few handbook keys that paft has no use for
// (bf16, torch_dtype, push_to_hub, ...) are accepted with a warning naming them.
//
// A recipe for `paft parallel` has the same keys at the top level, applied to both branches
// (those of one method to that branch only), then `sft:` and `preference:` sections (the
// preference section's `method: dpo|orpo` picks that branch's defaults) that override them for
// one branch, and a `merge:` section. `output_dir` and `threads` at the top level are the
// parallel run's own: the branches write to OUTPUT_DIR/sft and OUTPUT_DIR/preference unless their
// section says otherwise, and `threads` inside a section is that branch's share.
#pragma once

#include "merge/merge.h"
#include "train/options.h"

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <string>
#include <utility>
#include <vector>

namespace paft {

// ---- One method: paft sft | dpo | orpo --------------------------------------------------------

// Applies the recipe's keys to `options` (whose method must match the recipe's `method:` key, if
// it has one). InputError "FILE:LINE: KEY: problem" for a bad value, an unknown key (naming the
// closest known one), a key of another method, or YAML that does not parse.
void apply_recipe(const std::string & path, TrainOptions & options);

// Every key of options.method with its value, grouped and commented; apply_recipe reads it back
// to the same options (except `resume`, which is a flag of the run, not part of a recipe).
std::string recipe_yaml(const TrainOptions & options);

// What the command line gave: only flags actually given are in `values`, in the order CLI11
// reports them, as (key, text) with the key's recipe name.
struct TrainFlags {
    std::string                                      config;  // --config FILE
    bool                                             resume = false;
    std::vector<std::pair<std::string, std::string>> values;
};

// A flag per key (--learning-rate, --lora-r, ...; booleans also as --no-KEY), the short names
// (--model, --data, --out, --epochs, --batch-size, --grad-accum, ...), --config and --resume.
// `flags` must outlive the parse.
void add_train_flags(CLI::App & cmd, TrainFlags & flags);
void apply_flags(const TrainFlags & flags, TrainOptions & options);

// defaults(method), then the recipe, then the flags; validated.
TrainOptions resolve_train_options(Method method, const TrainFlags & flags);

// ---- PAFT: paft parallel ----------------------------------------------------------------------

struct ParallelOptions {
    TrainOptions sft, preference;
    MergeOptions merge;
    bool         merge_enabled = true;
    std::string  output_dir;
    int          threads     = 0;  // for the whole run; 0 = every core
    int          sft_threads = 0, preference_threads = 0;  // each branch's share; 0 = an even split
    // Under mpirun: the ranks of each branch (they add up to the job's); 0, 0 = the first half
    // (rounded down) SFT, the rest preference. Recipe key branch_ranks: "S:P" or half.
    int sft_ranks = 0, preference_ranks = 0;
};

// Each branch at its method's defaults (sft, and dpo or orpo); merge at MergeOptions' defaults.
ParallelOptions parallel_defaults(Method preference_method = Method::dpo);

// The recipe's keys over `options`. A `preference: method:` that differs from
// options.preference.method first resets that branch to the new method's defaults. Top-level keys
// named in `own_sections` are left alone (paft run's recipe reads them itself).
void apply_parallel_recipe(const std::string & path, ParallelOptions & options,
                           const std::vector<std::string> & own_sections = {});

// One mapping of merge keys (a `merge:` section's, e.g. an item of paft run's `merges:` list, a
// node of the YAML file at `path`) over MergeOptions' defaults; errors name path:LINE.
MergeOptions read_merge_options(const std::string & path, const YAML::Node & map);

struct ParallelFlags {
    std::string config;  // --config FILE
    bool        resume   = false;
    bool        no_merge = false;
    // (path, text): "model_name_or_path", "sft.train_data", "preference.beta", "merge.method", ...
    std::vector<std::pair<std::string, std::string>> values;
};

// --model, --sft-data, --pref-data, --pref-method, --out, --config, --threads, --sft-threads,
// --pref-threads, --branch-ranks, --seed, --l1-lambda (sft), --beta (preference), --resume, --no-merge,
// --merge-method (and the other merge keys), and --set PATH=VALUE for any recipe key
// (PATH: KEY for both branches, sft.KEY, preference.KEY, merge.KEY).
void add_parallel_flags(CLI::App & cmd, ParallelFlags & flags);

// parallel_defaults(preference method: flag, else recipe, else dpo), then the recipe, then the
// flags; the branches' output dirs default to OUT/sft and OUT/preference; validated.
ParallelOptions resolve_parallel_options(const ParallelFlags & flags);

// Both branches validated (messages say which branch), the merge settings, the thread counts.
void validate(const ParallelOptions & options);

// The parallel recipe: top-level keys where both branches agree, then each section.
std::string recipe_yaml(const ParallelOptions & options);

// ---- The key table ----------------------------------------------------------------------------

// Every recipe key of TrainOptions, in the order recipe_yaml writes them.
std::vector<std::string> recipe_keys();
// "per_device_train_batch_size (--batch-size)": a key and its command-line flag, for messages.
std::string option_label(const std::string & key);

}  // namespace paft
