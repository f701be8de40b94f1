// An evaluation task as the evaluator sees it: documents already turned into prompt pieces
// (lm-evaluation-harness's doc_to_text / doc_to_target / choices), how few-shot examples are
// drawn, and how documents are scored. Built-in tasks (eval/tasks.h) and tasks from YAML files
// (eval/task_yaml.h) both load into this.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace paft {

// What requests a document makes and which metrics it gets.
enum class Scoring {
    MultipleChoice,  // a log-likelihood per choice, (context, choice_delimiter + choice); acc, acc_norm
    PartialContext,  // Winogrande: a log-likelihood per option of the shared `continuation`, the
                     // context being the few-shot block + that option's partial sentence; acc
    TruthfulQaMc,    // TruthfulQA: log-likelihoods of " " + answer, mc1 answers then mc2; mc1, mc2
    Gsm8k,           // greedy generation; acc = the "#### N" numbers of answer and generation agree
    ExactMatch,      // greedy generation, optionally filtered by a regex; exact_match
};

// How fewshot_context picks k examples from the few-shot pool.
enum class ShotSource {
    Sample,           // rnd.sample(pool, k): the harness's tasks with a training split
    SampleExcluding,  // rnd.sample(pool, k + 1), the evaluated document dropped, the first k kept:
                      // the harness's tasks without a training split
    FirstN,           // the first k of the pool in file order, the generator untouched
    FirstNExcluding,  // the first k + 1, the evaluated document dropped, the first k kept
};

// One document, already formatted.
struct TaskDoc {
    std::string where;        // FILE:LINE of its record, for messages and sample logs
    std::string description;  // put before the whole context ("" for none), its separator included
    std::string text;         // doc_to_text: the prompt for this document
    std::string target;       // doc_to_target: what follows `text` when the document is a few-shot
                              // example, its leading delimiter included
    // MultipleChoice: the choices (continuations get the task's choice_delimiter before them);
    // PartialContext: each option's partial context; TruthfulQaMc: the mc1 answers.
    std::vector<std::string> choices;
    int                      gold = 0;  // index of the right choice (mc1: always 0)
    std::vector<std::string> mc2_choices;  // TruthfulQaMc: the mc2 answers
    size_t                   mc2_true = 0;  // how many mc2 answers come first and are true
    std::string continuation;  // PartialContext: the shared continuation (" " + rest of sentence)
    std::string answer;        // Gsm8k: the gold number; ExactMatch: the gold string
    // What the harness's `x != doc` compares when it drops the evaluated document from the
    // examples (SampleExcluding): the processed document, serialised.
    std::string identity;
};

struct Task {
    std::string           name;
    nlohmann::ordered_json version;  // the task's VERSION in the results' "versions"
    Scoring               scoring = Scoring::MultipleChoice;
    std::vector<TaskDoc>  eval_docs;  // in file order; the evaluator shuffles them
    std::vector<TaskDoc>  shot_docs;  // the few-shot pool in file order
    ShotSource            shot_source = ShotSource::Sample;
    std::string           shot_split;   // the pool's file, for messages
    bool                  zero_shot_only = false;
    std::string           fewshot_delimiter = "\n\n";  // between examples and before the document
    std::string           choice_delimiter  = " ";     // MultipleChoice: before each choice
    // Generation (Gsm8k, ExactMatch).
    std::vector<std::string> until;
    int                      max_gen_toks = 256;
    std::string              answer_regex;  // ExactMatch: "" for none, else Python re syntax
    int                      answer_group_select = 0;  // which match (negative: from the end)
    std::string              answer_fallback = "[invalid]";
    // Metrics reported, in order (the scoring's, possibly narrowed by a YAML metric_list).
    std::vector<std::string> metrics;
};

struct CustomTaskConfig;  // eval/task_yaml.h

// A task to run, resolved from a name or a YAML file but not loaded yet.
struct TaskSpec {
    std::string name;                 // as reported: "arc_challenge", "hendrycksTest-anatomy", ...
    std::string family;               // built-in: "arc_challenge", "arc_easy", "hellaswag", "mmlu",
                                      // "truthfulqa_mc", "winogrande", "gsm8k"; "yaml" for a custom task
    std::string subject;              // mmlu: the subject ("college_biology")
    std::string data_dir;             // built-in: DATA_DIR holding DATASET/SPLIT.jsonl files
    int         default_num_fewshot = 0;  // the Open LLM Leaderboard's for built-ins, the YAML's for custom
    std::shared_ptr<const CustomTaskConfig> custom;  // yaml: the parsed file
};

}  // namespace paft
