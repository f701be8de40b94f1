// Custom evaluation tasks from a small YAML file, in the style of lm-evaluation-harness's YAML
// tasks (a subset; docs/EVALUATION.md lists it):
//
//   task: my_qa
//   dataset_path: data/my_qa          # a folder of SPLIT.jsonl / SPLIT.json files, or one file,
//                                     # relative to the YAML file
//   test_split: test                  # or validation_split; training_split, fewshot_split
//   output_type: multiple_choice      # or generate_until
//   doc_to_text: "Question: {{question}}\nAnswer:"
//   doc_to_target: "{{answer}}"       # an index, a field name or a template
//   doc_to_choice: ["yes", "no"]      # a list, a field name, or a template giving a list
//   num_fewshot: 3
//
// Templates are Jinja, rendered with the document's fields as lm-eval's do (StrictUndefined, no
// trim_blocks/lstrip_blocks, trailing newlines kept).
#pragma once

#include "eval/task.h"
#include "template/jinja_parser.h"

#include <string>
#include <vector>

namespace paft {

// A document template: a field name (when the document has a field of that name, its value is
// used, as lm-eval does with column names) or a Jinja template.
struct DocTemplate {
    std::string source;  // as written
    std::string origin;  // "FILE: key" for errors
    jinja::Body body;
};

struct CustomTaskConfig {
    std::string file;          // the YAML file
    std::string task;
    std::string dataset_path;  // resolved against the YAML file's folder
    bool        dataset_is_file = false;
    std::string training_split, validation_split, test_split, fewshot_split;
    bool        generate = false;  // output_type generate_until (else multiple_choice)
    DocTemplate doc_to_text;
    DocTemplate doc_to_target;
    bool        target_is_index = false;  // doc_to_target is an integer
    int         target_index    = 0;
    std::vector<std::string> choice_list;  // doc_to_choice given as a YAML list
    DocTemplate              doc_to_choice;  // else a field name or template (source "" when absent)
    DocTemplate              description;    // source "" when absent
    std::string target_delimiter  = " ";
    std::string fewshot_delimiter = "\n\n";
    int         num_fewshot       = 0;
    bool        first_n           = false;  // fewshot_config.sampler: first_n
    std::vector<std::string> until;  // generation_kwargs.until (default: [fewshot_delimiter])
    int                      max_gen_toks = 256;
    std::string              answer_regex;  // filter_list's regex ("" for none)
    int                      answer_group_select = 0;
    std::string              answer_fallback     = "[invalid]";
    std::vector<std::string> metrics;
    nlohmann::ordered_json   version = 0;  // metadata.version
};

// Reads and checks a task YAML file. InputError naming FILE:LINE for unknown keys (with a
// suggestion), wrong types, unsupported values, and bad templates.
TaskSpec custom_task_spec(const std::string & yaml_path);

// A task list as `paft eval --tasks` and `paft run` take it: built-in names (resolve_tasks: needs
// `data_dir`) and YAML files (.yaml/.yml, custom_task_spec), in the order given, each once.
std::vector<TaskSpec> resolve_task_list(const std::vector<std::string> & names, const std::string & data_dir);
bool                  is_yaml_task_file(const std::string & name);

// Reads a custom task's documents (the few-shot pool only when num_fewshot > 0) and formats them.
Task load_custom_task(const TaskSpec & spec, int num_fewshot);

// Python's ast.literal_eval of a list or tuple of str/int/float literals, as lm-eval applies to a
// rendered doc_to_choice; the items as str() gives them. InputError naming `where` otherwise.
std::vector<std::string> parse_python_list(const std::string & text, const std::string & where);

}  // namespace paft
