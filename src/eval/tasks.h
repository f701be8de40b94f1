// The built-in tasks: the Open LLM Leaderboard (v1) suite as lm-evaluation-harness ran it at
// commit b281b09 (arc_challenge, arc_easy, hellaswag, hendrycksTest-SUBJECT, truthfulqa_mc,
// winogrande, gsm8k), read from local copies of the Hugging Face Hub datasets.
//
// Data layout: DATA_DIR/DATASET/SPLIT.jsonl (or .json, a JSON array), with the Hub's fields:
//   arc_challenge/, arc_easy/  train, test            (validation unused)
//   hellaswag/                 train, validation
//   mmlu/                      validation, test       (all subjects in one file, `subject` field;
//                                                      dev is not read, see docs/EVALUATION.md)
//   truthfulqa_mc/             validation
//   winogrande/                train, validation      (test has no answers)
//   gsm8k/                     train, test
// Only the splits a run needs are read (the few-shot split only when shots are asked for).
#pragma once

#include "eval/task.h"

#include <string>
#include <vector>

namespace paft {

// Task names accepted besides hendrycksTest-SUBJECT: the built-ins and the aliases `mmlu` (every
// subject present in DATA_DIR/mmlu/test) and `leaderboard` (the six leaderboard benchmarks).
std::vector<std::string> builtin_task_names();

// Resolves names (built-ins, hendrycksTest-SUBJECT, aliases) into tasks, each with the
// leaderboard's shot count as its default. A task named twice runs once. InputError for an
// unknown name (with a suggestion) or a subject missing from the MMLU data.
std::vector<TaskSpec> resolve_tasks(const std::vector<std::string> & names, const std::string & data_dir);

// Reads a built-in task's documents; the few-shot split only when num_fewshot > 0. InputError
// naming FILE:LINE and the field for missing or mistyped fields, and the folder for a missing split.
Task load_builtin_task(const TaskSpec & spec, int num_fewshot);

// The final answer of a GSM8K solution or generation: the first "#### N" (N an optional '-' then
// digits, '.' and ','), commas removed; "[invalid]" when there is none.
std::string gsm8k_answer(const std::string & text);

// "a, b, c": the names in error messages (by hand: fmt::join trips a GCC 12 -Wstringop-overflow
// false positive).
std::string comma_list(const std::vector<std::string> & items);

// HellaSwag's text cleaning: strip, " [title]" -> ". ", "[...]" removed, "  " -> " ".
std::string hellaswag_preprocess(const std::string & text);

}  // namespace paft
