#include "eval/tasks.h"
#include "io/fs.h"

#include "core/error.h"
#include "core/suggest.h"
#include "data/records.h"
#include "template/jinja_strings.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

// The versions of the task classes at harness commit b281b09 (their VERSION attributes).
constexpr int kArcVersion = 0, kHellaswagVersion = 0, kMmluVersion = 1, kTruthfulqaVersion = 1,
              kWinograndeVersion = 0, kGsm8kVersion = 0;

// lm-evaluation-harness truthfulqa.py's QA_PROMPT: six questions and answers before each question.
const char * const kTruthfulqaPrompt =
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain.";

struct Builtin {
    const char * name;
    int          shots;  // the Open LLM Leaderboard's (arc_easy, not on it, as arc_challenge)
};
const Builtin kBuiltins[] = {{"arc_challenge", 25}, {"arc_easy", 25}, {"hellaswag", 10}, {"truthfulqa_mc", 0},
                             {"winogrande", 5},     {"gsm8k", 5}};
constexpr int kMmluShots = 5;

// ---- files and fields ----------------------------------------------------------------------

// DATA_DIR/DATASET/SPLIT.jsonl or .json, "" when neither is there.
std::string find_split(const std::string & dir, const std::string & split) {
    for (const char * ext : {".jsonl", ".json"}) {
        const std::string path = (std::filesystem::path(dir) / (split + ext)).string();
        if (is_file(path)) {
            return path;
        }
    }
    return "";
}

std::string require_split(const std::string & dir, const std::string & split, const std::string & task) {
    const std::string path = find_split(dir, split);
    if (path.empty()) {
        throw InputError(fmt::format("{}: no {} split for {} (expected {}.jsonl or {}.json there)", dir, split, task,
                                     split, split));
    }
    return path;
}

const ojson & field(const Record & r, const std::string & name) {
    const auto it = r.value.find(name);
    if (it == r.value.end()) {
        throw InputError(fmt::format("{}: field '{}' is missing", r.where, name));
    }
    return *it;
}

std::string string_field(const Record & r, const std::string & name) {
    const ojson & v = field(r, name);
    if (!v.is_string()) {
        throw InputError(fmt::format("{}: field '{}' must be a string (it is {})", r.where, name, v.type_name()));
    }
    return v.get<std::string>();
}

std::vector<std::string> string_list(const Record & r, const ojson & v, const std::string & name) {
    if (!v.is_array() || v.empty()) {
        throw InputError(fmt::format("{}: field '{}' must be a non-empty list of strings", r.where, name));
    }
    std::vector<std::string> out;
    for (const ojson & item : v) {
        if (!item.is_string()) {
            throw InputError(fmt::format("{}: field '{}' must be a list of strings (an item is {})", r.where, name,
                                         item.type_name()));
        }
        out.push_back(item.get<std::string>());
    }
    return out;
}

// A nested object field such as choices{text, label}.
const ojson & object_field(const Record & r, const std::string & name) {
    const ojson & v = field(r, name);
    if (!v.is_object()) {
        throw InputError(fmt::format("{}: field '{}' must be an object (it is {})", r.where, name, v.type_name()));
    }
    return v;
}

const ojson & member(const Record & r, const ojson & object, const std::string & parent, const std::string & name) {
    const auto it = object.find(name);
    if (it == object.end()) {
        throw InputError(fmt::format("{}: field '{}.{}' is missing", r.where, parent, name));
    }
    return *it;
}

std::string strip(const std::string & s) { return jinja::py_strip(s, nullptr, true, true); }

// ---- the tasks' _process_doc --------------------------------------------------------------

// arc.py: "Question: Q\nAnswer:", choices.text, numeric answerKeys "1".."5" read as "A".."E".
TaskDoc arc_doc(const Record & r) {
    TaskDoc d;
    d.where              = r.where;
    d.text               = "Question: " + string_field(r, "question") + "\nAnswer:";
    const ojson & choices = object_field(r, "choices");
    d.choices            = string_list(r, member(r, choices, "choices", "text"), "choices.text");
    std::string key      = string_field(r, "answerKey");
    if (key.size() == 1 && key[0] >= '1' && key[0] <= '5') {
        key = std::string(1, static_cast<char>('A' + (key[0] - '1')));
    }
    if (key.size() != 1 || key[0] < 'A' || key[0] > 'E') {
        throw InputError(fmt::format("{}: field 'answerKey' must be one of A-E or 1-5 (it is \"{}\")", r.where,
                                     string_field(r, "answerKey")));
    }
    d.gold = key[0] - 'A';
    if (d.gold >= static_cast<int>(d.choices.size())) {
        throw InputError(fmt::format("{}: answerKey {} but only {} choices", r.where, key, d.choices.size()));
    }
    d.target   = " " + d.choices[static_cast<size_t>(d.gold)];
    d.identity = d.text;
    return d;
}

// hellaswag.py: "ACTIVITY: CTX_A Ctx_b" cleaned, the endings cleaned, label as an int.
TaskDoc hellaswag_doc(const Record & r) {
    TaskDoc d;
    d.where                 = r.where;
    const std::string ctx   = string_field(r, "ctx_a") + " " + jinja::py_capitalize(string_field(r, "ctx_b"));
    d.text                  = hellaswag_preprocess(string_field(r, "activity_label") + ": " + ctx);
    for (const std::string & ending : string_list(r, field(r, "endings"), "endings")) {
        d.choices.push_back(hellaswag_preprocess(ending));
    }
    const ojson & label = field(r, "label");
    int64_t       gold  = -1;
    if (label.is_number_integer()) {
        gold = label.get<int64_t>();
    } else if (!label.is_string() || !jinja::parse_int(label.get<std::string>(), gold)) {
        throw InputError(fmt::format("{}: field 'label' must be an integer or a string of one (it is {})", r.where,
                                     label.dump()));
    }
    if (gold < 0 || gold >= static_cast<int64_t>(d.choices.size())) {
        throw InputError(fmt::format("{}: label {} but {} endings", r.where, gold, d.choices.size()));
    }
    d.gold     = static_cast<int>(gold);
    d.target   = " " + d.choices[static_cast<size_t>(d.gold)];
    d.identity = d.text;
    return d;
}

// hendrycks_test.py (VERSION 1): "QUESTION\nA. c0\nB. c1\nC. c2\nD. c3\nAnswer:", choices the
// letters, and the subject's description before everything.
TaskDoc mmlu_doc(const Record & r, const std::string & description) {
    TaskDoc d;
    d.where = r.where;
    const std::vector<std::string> options = string_list(r, field(r, "choices"), "choices");
    if (options.size() != 4) {
        throw InputError(fmt::format("{}: field 'choices' must hold 4 answers (it holds {})", r.where, options.size()));
    }
    d.text = strip(string_field(r, "question")) + "\n";
    for (size_t i = 0; i < 4; i++) {
        d.text += fmt::format("{}. {}\n", static_cast<char>('A' + i), options[i]);
    }
    d.text += "Answer:";
    d.choices           = {"A", "B", "C", "D"};
    const ojson & answer = field(r, "answer");
    if (!answer.is_number_integer() || answer.get<int64_t>() < 0 || answer.get<int64_t>() > 3) {
        throw InputError(fmt::format("{}: field 'answer' must be an integer 0-3 (it is {})", r.where, answer.dump()));
    }
    d.gold        = answer.get<int>();
    d.target      = " " + d.choices[static_cast<size_t>(d.gold)];
    d.description = description;
    d.identity    = d.text + '\x1f' + std::to_string(d.gold);
    return d;
}

// truthfulqa.py (TruthfulQAMultipleChoice): the QA preamble, then "Q: QUESTION\nA:".
std::vector<std::string> truthfulqa_targets(const Record & r, const std::string & name, std::vector<int64_t> & labels) {
    const ojson &                  targets = object_field(r, name);
    const std::vector<std::string> choices = string_list(r, member(r, targets, name, "choices"), name + ".choices");
    const ojson &                  ls      = member(r, targets, name, "labels");
    if (!ls.is_array() || ls.size() != choices.size()) {
        throw InputError(fmt::format("{}: field '{}.labels' must be a list as long as '{}.choices'", r.where, name, name));
    }
    for (const ojson & l : ls) {
        if (!l.is_number_integer() || (l.get<int64_t>() != 0 && l.get<int64_t>() != 1)) {
            throw InputError(fmt::format("{}: field '{}.labels' must hold 0s and 1s", r.where, name));
        }
        labels.push_back(l.get<int64_t>());
    }
    return choices;
}

TaskDoc truthfulqa_doc(const Record & r) {
    TaskDoc d;
    d.where = r.where;
    d.text  = std::string(kTruthfulqaPrompt) + "\n\nQ: " + string_field(r, "question") + "\nA:";
    std::vector<int64_t> mc1_labels, mc2_labels;
    d.choices     = truthfulqa_targets(r, "mc1_targets", mc1_labels);
    d.mc2_choices = truthfulqa_targets(r, "mc2_targets", mc2_labels);
    // The harness takes the first mc1 answer as the right one, and every mc2 answer before the
    // first label 0 as true.
    d.gold = 0;
    size_t split = 0;
    while (split < mc2_labels.size() && mc2_labels[split] != 0) {
        split++;
    }
    if (split == mc2_labels.size()) {
        throw InputError(fmt::format("{}: field 'mc2_targets.labels' has no 0 (no false answer)", r.where));
    }
    d.mc2_true = split;
    d.target   = " ";  // its doc_to_target; never used, the task being zero-shot
    d.identity = d.text;
    return d;
}

// winogrande.py: partial evaluation. The sentence up to the blank with an option filled in is
// the context, the rest of the sentence after the blank the continuation.
TaskDoc winogrande_doc(const Record & r) {
    TaskDoc d;
    d.where                  = r.where;
    const std::string sentence = string_field(r, "sentence");
    const size_t      blank    = sentence.find('_');
    if (blank == std::string::npos) {
        throw InputError(fmt::format("{}: field 'sentence' has no '_' blank", r.where));
    }
    const std::string answer = string_field(r, "answer");
    if (answer != "1" && answer != "2") {
        throw InputError(fmt::format("{}: field 'answer' must be \"1\" or \"2\" (it is \"{}\")", r.where, answer));
    }
    d.choices      = {sentence.substr(0, blank) + string_field(r, "option1"),
                      sentence.substr(0, blank) + string_field(r, "option2")};
    d.gold         = answer == "1" ? 0 : 1;
    d.continuation = " " + strip(sentence.substr(blank + 1));
    d.text         = d.choices[static_cast<size_t>(d.gold)];
    d.target       = d.continuation;
    d.identity     = d.text + '\x1f' + d.target;
    return d;
}

// gsm8k.py: "Question: Q\nAnswer:", the whole solution as the few-shot target.
TaskDoc gsm8k_doc(const Record & r) {
    TaskDoc d;
    d.where                 = r.where;
    d.text                  = "Question: " + string_field(r, "question") + "\nAnswer:";
    const std::string solution = string_field(r, "answer");
    d.target                = " " + solution;
    d.answer                = gsm8k_answer(solution);
    if (d.answer == "[invalid]") {
        throw InputError(fmt::format("{}: field 'answer' has no final \"#### N\" answer", r.where));
    }
    d.identity = d.text;
    return d;
}

std::vector<TaskDoc> read_docs(const std::string & path, TaskDoc (*make)(const Record &)) {
    std::vector<TaskDoc> docs;
    for_each_record(path, [&](Record && r) {
        docs.push_back(make(r));
        return true;
    });
    return docs;
}

// The records of one MMLU subject, in file order.
std::vector<TaskDoc> read_mmlu_docs(const std::string & path, const std::string & subject) {
    const std::string    description = "The following are multiple choice questions (with answers) about " +
                                    jinja::py_replace(subject, "_", " ", -1) + ".\n\n";
    std::vector<TaskDoc> docs;
    for_each_record(path, [&](Record && r) {
        if (string_field(r, "subject") == subject) {
            docs.push_back(mmlu_doc(r, description));
        }
        return true;
    });
    return docs;
}

// The subjects in DATA_DIR/mmlu/test, in order of first appearance.
std::vector<std::string> mmlu_subjects(const std::string & data_dir) {
    const std::string        path = require_split((std::filesystem::path(data_dir) / "mmlu").string(), "test", "mmlu");
    std::vector<std::string> subjects;
    std::set<std::string>    seen;
    for_each_record(path, [&](Record && r) {
        std::string s = string_field(r, "subject");
        if (seen.insert(s).second) {
            subjects.push_back(std::move(s));
        }
        return true;
    });
    return subjects;
}

TaskSpec builtin_spec(const std::string & name, const std::string & data_dir, int shots) {
    TaskSpec s;
    s.name                = name;
    s.family              = name;
    s.data_dir            = data_dir;
    s.default_num_fewshot = shots;
    return s;
}

TaskSpec mmlu_spec(const std::string & subject, const std::string & data_dir) {
    TaskSpec s = builtin_spec("hendrycksTest-" + subject, data_dir, kMmluShots);
    s.family   = "mmlu";
    s.subject  = subject;
    return s;
}

}  // namespace

std::string gsm8k_answer(const std::string & text) {
    // re.search(r"#### (\-?[0-9\.\,]+)", text): the first "#### " followed by a number.
    auto in_class = [](char c) { return (c >= '0' && c <= '9') || c == '.' || c == ','; };
    for (size_t at = text.find("#### "); at != std::string::npos; at = text.find("#### ", at + 1)) {
        size_t begin = at + 5, end = begin;
        if (end < text.size() && text[end] == '-' && end + 1 < text.size() && in_class(text[end + 1])) {
            end++;
        }
        while (end < text.size() && in_class(text[end])) {
            end++;
        }
        if (end > begin) {
            std::string number;
            for (size_t i = begin; i < end; i++) {
                if (text[i] != ',') {
                    number += text[i];
                }
            }
            return number;
        }
    }
    return "[invalid]";
}

std::string hellaswag_preprocess(const std::string & text) {
    std::string s = jinja::py_replace(strip(text), " [title]", ". ", -1);
    // re.sub("\\[.*?\\]", "", s): each '[' with a ']' later on its line starts a match that ends
    // at the first such ']'.
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (s[i] == '[') {
            const size_t close = s.find_first_of("]\n", i + 1);
            if (close != std::string::npos && s[close] == ']') {
                i = close + 1;
                continue;
            }
        }
        out += s[i++];
    }
    return jinja::py_replace(out, "  ", " ", -1);
}

std::vector<std::string> builtin_task_names() {
    std::vector<std::string> names;
    for (const Builtin & b : kBuiltins) {
        names.push_back(b.name);
    }
    names.push_back("mmlu");
    names.push_back("leaderboard");
    return names;
}

std::vector<TaskSpec> resolve_tasks(const std::vector<std::string> & names, const std::string & data_dir) {
    std::vector<TaskSpec>    specs;
    std::set<std::string>    added;
    std::vector<std::string> subjects;  // read once, when an MMLU name first needs them
    bool                     subjects_read = false;
    auto                     get_subjects  = [&]() -> const std::vector<std::string> & {
        if (!subjects_read) {
            subjects      = mmlu_subjects(data_dir);
            subjects_read = true;
        }
        return subjects;
    };
    auto add = [&](TaskSpec s) {
        if (added.insert(s.name).second) {
            specs.push_back(std::move(s));
        }
    };
    auto add_builtin = [&](const std::string & name) {
        for (const Builtin & b : kBuiltins) {
            if (name == b.name) {
                add(builtin_spec(name, data_dir, b.shots));
                return true;
            }
        }
        return false;
    };
    for (const std::string & name : names) {
        if (add_builtin(name)) {
            continue;
        }
        if (name == "mmlu" || name == "leaderboard") {
            if (name == "leaderboard") {
                add_builtin("arc_challenge");
                add_builtin("hellaswag");
            }
            for (const std::string & subject : get_subjects()) {
                add(mmlu_spec(subject, data_dir));
            }
            if (name == "leaderboard") {
                add_builtin("truthfulqa_mc");
                add_builtin("winogrande");
                add_builtin("gsm8k");
            }
            continue;
        }
        const std::string prefix = "hendrycksTest-";
        if (name.rfind(prefix, 0) == 0) {
            const std::string                subject = name.substr(prefix.size());
            const std::vector<std::string> & known   = get_subjects();
            if (std::find(known.begin(), known.end(), subject) == known.end()) {
                const std::string close = closest_name(subject, known);
                throw InputError(fmt::format("unknown MMLU subject '{}' (not in {}){}", subject,
                                             (std::filesystem::path(data_dir) / "mmlu").string(),
                                             close.empty() ? "" : fmt::format("; did you mean '{}{}'?", prefix, close)));
            }
            add(mmlu_spec(subject, data_dir));
            continue;
        }
        const std::string close = closest_name(name, builtin_task_names());
        throw InputError(fmt::format("unknown task '{}'{} (tasks: {}, hendrycksTest-SUBJECT, or a task YAML file)", name,
                                     close.empty() ? "" : fmt::format(": did you mean '{}'?", close),
                                     comma_list(builtin_task_names())));
    }
    return specs;
}

Task load_builtin_task(const TaskSpec & spec, int num_fewshot) {
    Task t;
    t.name                = spec.name;
    const std::string dir = (std::filesystem::path(spec.data_dir) / spec.family).string();
    auto eval_split = [&](const std::string & split, TaskDoc (*make)(const Record &)) {
        t.eval_docs = read_docs(require_split(dir, split, spec.name), make);
    };
    auto shot_split = [&](const std::string & split, TaskDoc (*make)(const Record &)) {
        if (num_fewshot > 0) {
            t.shot_split = require_split(dir, split, spec.name);
            t.shot_docs  = read_docs(t.shot_split, make);
        }
    };
    if (spec.family == "arc_challenge" || spec.family == "arc_easy") {
        t.version = kArcVersion;
        eval_split("test", arc_doc);
        shot_split("train", arc_doc);
        t.metrics = {"acc", "acc_norm"};
    } else if (spec.family == "hellaswag") {
        t.version = kHellaswagVersion;
        eval_split("validation", hellaswag_doc);
        shot_split("train", hellaswag_doc);
        t.metrics = {"acc", "acc_norm"};
    } else if (spec.family == "mmlu") {
        // The harness's MMLU task has no training split, so its base fewshot_context samples
        // k + 1 validation documents and drops the evaluated one: the task's own
        // fewshot_examples (the first k of dev) is never called at b281b09.
        t.version   = kMmluVersion;
        t.eval_docs = read_mmlu_docs(require_split(dir, "test", spec.name), spec.subject);
        if (num_fewshot > 0) {
            t.shot_split = require_split(dir, "validation", spec.name);
            t.shot_docs  = read_mmlu_docs(t.shot_split, spec.subject);
        }
        t.shot_source = ShotSource::SampleExcluding;
        t.metrics     = {"acc", "acc_norm"};
    } else if (spec.family == "truthfulqa_mc") {
        t.version        = kTruthfulqaVersion;
        t.scoring        = Scoring::TruthfulQaMc;
        t.zero_shot_only = true;
        eval_split("validation", truthfulqa_doc);
        t.metrics = {"mc1", "mc2"};
    } else if (spec.family == "winogrande") {
        t.version = kWinograndeVersion;
        t.scoring = Scoring::PartialContext;
        eval_split("validation", winogrande_doc);
        shot_split("train", winogrande_doc);
        t.metrics = {"acc"};
    } else if (spec.family == "gsm8k") {
        t.version = kGsm8kVersion;
        t.scoring = Scoring::Gsm8k;
        eval_split("test", gsm8k_doc);
        shot_split("train", gsm8k_doc);
        t.until        = {":", "Question:", "Question"};
        t.max_gen_toks = 256;
        t.metrics      = {"acc"};
    } else {
        throw InputError(fmt::format("{}: not a built-in task", spec.name));
    }
    return t;
}

std::string comma_list(const std::vector<std::string> & items) {
    std::string out;
    for (const std::string & item : items) {
        if (!out.empty()) {
            out += ", ";
        }
        out += item;
    }
    return out;
}

}  // namespace paft
