#include "eval/task_yaml.h"
#include "io/fs.h"
#include "eval/tasks.h"

#include "core/error.h"
#include "core/suggest.h"
#include "data/records.h"
#include "eval/regex_filter.h"
#include "io/yaml_file.h"
#include "template/jinja_eval.h"
#include "template/jinja_strings.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

// lm-eval's template environment: StrictUndefined, keep_trailing_newline, no block trimming.
constexpr jinja::Whitespace kTaskWhitespace{false, false, true};

const std::vector<std::string> kTopKeys = {
    "task",          "dataset_path",   "training_split", "validation_split",  "test_split",
    "fewshot_split", "output_type",    "doc_to_text",    "doc_to_target",     "doc_to_choice",
    "description",   "target_delimiter", "fewshot_delimiter", "num_fewshot",  "fewshot_config",
    "generation_kwargs", "filter_list", "metric_list",   "metadata"};

// Reading the YAML with FILE:LINE in every message.
class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    std::string where(const YAML::Node & n) const { return fmt::format("{}:{}", file_, n.Mark().line + 1); }

    [[noreturn]] void fail(const YAML::Node & n, const std::string & message) const {
        throw InputError(where(n) + ": " + message);
    }

    // Every key of `map` must be in `allowed`; `section` names the map in messages.
    void check_keys(const YAML::Node & map, const std::vector<std::string> & allowed, const std::string & section) const {
        if (!map.IsMap()) {
            fail(map, section + " must be a mapping");
        }
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::string key = it->first.as<std::string>();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                const std::string near = closest_name(key, allowed);
                throw InputError(fmt::format("{}: unknown key '{}' in {}{} (supported: {})", where(it->first), key,
                                             section, near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                                             comma_list(allowed)));
            }
        }
    }

    std::string text(const YAML::Node & n, const std::string & key) const {
        if (!n.IsScalar()) {
            fail(n, key + " must be a string");
        }
        return n.as<std::string>();
    }

    int integer(const YAML::Node & n, const std::string & key, int min) const {
        int v = 0;
        if (!n.IsScalar() || !YAML::convert<int>::decode(n, v) || v < min) {
            fail(n, fmt::format("{} must be an integer >= {}", key, min));
        }
        return v;
    }

    std::vector<std::string> strings(const YAML::Node & n, const std::string & key) const {
        if (!n.IsSequence()) {
            fail(n, key + " must be a list of strings");
        }
        std::vector<std::string> out;
        for (const YAML::Node & item : n) {
            out.push_back(text(item, key + " item"));
        }
        return out;
    }

    DocTemplate doc_template(const YAML::Node & n, const std::string & key) const {
        DocTemplate t;
        t.source = text(n, key);
        t.origin = where(n) + ": " + key;
        t.body   = jinja::parse_template(t.source, t.origin, kTaskWhitespace);
        return t;
    }

    const std::string & file() const { return file_; }

private:
    std::string file_;
};

// A plain (unquoted) YAML scalar that reads as an integer.
bool plain_integer(const YAML::Node & n, int & out) {
    return n.IsScalar() && n.Tag() != "!" && YAML::convert<int>::decode(n, out);
}

void read_generation(const Reader & r, const YAML::Node & g, CustomTaskConfig & c) {
    r.check_keys(g, {"until", "max_gen_toks", "do_sample", "temperature"}, "generation_kwargs");
    if (g["until"]) {
        c.until = g["until"].IsScalar() ? std::vector<std::string>{r.text(g["until"], "until")}
                                       : r.strings(g["until"], "until");
    }
    if (g["max_gen_toks"]) {
        c.max_gen_toks = r.integer(g["max_gen_toks"], "max_gen_toks", 1);
    }
    bool sample = false;
    if (g["do_sample"] && (!YAML::convert<bool>::decode(g["do_sample"], sample) || sample)) {
        r.fail(g["do_sample"], "do_sample must be false: generation is greedy");
    }
    double temperature = 0;
    if (g["temperature"] && (!YAML::convert<double>::decode(g["temperature"], temperature) || temperature != 0)) {
        r.fail(g["temperature"], "temperature must be 0: generation is greedy");
    }
}

void read_filters(const Reader & r, const YAML::Node & list, CustomTaskConfig & c) {
    if (!list.IsSequence() || list.size() != 1) {
        r.fail(list, "filter_list must hold exactly one filter pipeline");
    }
    const YAML::Node & pipeline = list[0];
    r.check_keys(pipeline, {"name", "filter"}, "filter_list");
    const YAML::Node & steps = pipeline["filter"];
    if (!steps || !steps.IsSequence()) {
        r.fail(pipeline, "filter_list: 'filter' must be a list of steps");
    }
    for (const YAML::Node & step : steps) {
        r.check_keys(step, {"function", "regex_pattern", "group_select", "fallback"}, "a filter step");
        if (!step["function"]) {
            r.fail(step, "a filter step needs 'function' (regex or take_first)");
        }
        const std::string fn = r.text(step["function"], "function");
        if (fn == "regex") {
            if (!step["regex_pattern"]) {
                r.fail(step, "the regex filter needs 'regex_pattern'");
            }
            c.answer_regex = r.text(step["regex_pattern"], "regex_pattern");
            if (step["group_select"]) {
                int v = 0;
                if (!YAML::convert<int>::decode(step["group_select"], v)) {
                    r.fail(step["group_select"], "group_select must be an integer");
                }
                c.answer_group_select = v;
            }
            if (step["fallback"]) {
                c.answer_fallback = r.text(step["fallback"], "fallback");
            }
            RegexFilter(c.answer_regex, 0, "", r.where(step["regex_pattern"]));  // checks the syntax now
        } else if (fn != "take_first") {
            const std::string near = closest_name(fn, {"regex", "take_first"});
            r.fail(step["function"], fmt::format("unsupported filter function '{}'{} (supported: regex, take_first)", fn,
                                                 near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
        } else if (step["regex_pattern"] || step["group_select"] || step["fallback"]) {
            r.fail(step, "take_first takes no options");
        }
    }
}

void read_metrics(const Reader & r, const YAML::Node & list, CustomTaskConfig & c) {
    const std::vector<std::string> supported = c.generate ? std::vector<std::string>{"exact_match"}
                                                          : std::vector<std::string>{"acc", "acc_norm"};
    if (!list.IsSequence() || list.size() == 0) {
        r.fail(list, "metric_list must be a non-empty list");
    }
    c.metrics.clear();
    for (const YAML::Node & m : list) {
        r.check_keys(m, {"metric", "aggregation", "higher_is_better"}, "metric_list");
        if (!m["metric"]) {
            r.fail(m, "a metric_list entry needs 'metric'");
        }
        const std::string name = r.text(m["metric"], "metric");
        if (std::find(supported.begin(), supported.end(), name) == supported.end()) {
            r.fail(m["metric"], fmt::format("metric '{}' is not supported for this output_type (supported: {})", name,
                                            comma_list(supported)));
        }
        if (m["aggregation"] && r.text(m["aggregation"], "aggregation") != "mean") {
            r.fail(m["aggregation"], "aggregation must be mean");
        }
        c.metrics.push_back(name);
    }
}

CustomTaskConfig read_config(const std::string & path) {
    const YAML::Node root = load_yaml_file(path, "task file");
    const Reader     r(path);
    r.check_keys(root, kTopKeys, "the task file");
    CustomTaskConfig c;
    c.file = path;
    auto required = [&](const char * key) {
        if (!root[key]) {
            throw InputError(fmt::format("{}: '{}' is required", path, key));
        }
        return root[key];
    };
    c.task = r.text(required("task"), "task");
    const std::filesystem::path base = std::filesystem::path(path).parent_path();
    c.dataset_path = (base / r.text(required("dataset_path"), "dataset_path")).string();
    if (is_file(c.dataset_path)) {
        c.dataset_is_file = true;
    } else if (!is_folder(c.dataset_path)) {
        r.fail(root["dataset_path"], fmt::format("dataset_path {} is neither a file nor a folder", c.dataset_path));
    }
    const char * split_keys[] = {"training_split", "validation_split", "test_split", "fewshot_split"};
    std::string * split_fields[] = {&c.training_split, &c.validation_split, &c.test_split, &c.fewshot_split};
    for (size_t i = 0; i < 4; i++) {
        if (root[split_keys[i]]) {
            if (c.dataset_is_file) {
                r.fail(root[split_keys[i]], "dataset_path is one file (the documents to evaluate): split keys do not apply");
            }
            *split_fields[i] = r.text(root[split_keys[i]], split_keys[i]);
        }
    }
    if (!c.dataset_is_file && c.test_split.empty() && c.validation_split.empty()) {
        throw InputError(fmt::format("{}: test_split or validation_split is required (the documents to evaluate)", path));
    }
    const std::string output_type = root["output_type"] ? r.text(root["output_type"], "output_type") : "generate_until";
    if (output_type != "multiple_choice" && output_type != "generate_until") {
        r.fail(root["output_type"], fmt::format("output_type '{}' is not supported (multiple_choice or generate_until)",
                                                output_type));
    }
    c.generate    = output_type == "generate_until";
    c.doc_to_text = r.doc_template(required("doc_to_text"), "doc_to_text");
    const YAML::Node target = required("doc_to_target");
    if (plain_integer(target, c.target_index)) {
        c.target_is_index = true;
    } else {
        c.doc_to_target = r.doc_template(target, "doc_to_target");
    }
    if (root["doc_to_choice"]) {
        if (c.generate) {
            r.fail(root["doc_to_choice"], "doc_to_choice is for output_type multiple_choice");
        }
        if (root["doc_to_choice"].IsSequence()) {
            c.choice_list = r.strings(root["doc_to_choice"], "doc_to_choice");
            if (c.choice_list.empty()) {
                r.fail(root["doc_to_choice"], "doc_to_choice is an empty list");
            }
        } else {
            c.doc_to_choice = r.doc_template(root["doc_to_choice"], "doc_to_choice");
        }
    } else if (!c.generate) {
        throw InputError(fmt::format("{}: doc_to_choice is required for output_type multiple_choice", path));
    }
    if (c.target_is_index && c.generate) {
        r.fail(target, "doc_to_target must be a template for generate_until");
    }
    if (root["description"]) {
        c.description = r.doc_template(root["description"], "description");
    }
    if (root["target_delimiter"]) {
        c.target_delimiter = r.text(root["target_delimiter"], "target_delimiter");
    }
    if (root["fewshot_delimiter"]) {
        c.fewshot_delimiter = r.text(root["fewshot_delimiter"], "fewshot_delimiter");
    }
    if (root["num_fewshot"]) {
        c.num_fewshot = r.integer(root["num_fewshot"], "num_fewshot", 0);
    }
    if (root["fewshot_config"]) {
        r.check_keys(root["fewshot_config"], {"sampler"}, "fewshot_config");
        if (root["fewshot_config"]["sampler"]) {
            const std::string sampler = r.text(root["fewshot_config"]["sampler"], "sampler");
            if (sampler != "default" && sampler != "first_n") {
                r.fail(root["fewshot_config"]["sampler"], "sampler must be default or first_n");
            }
            c.first_n = sampler == "first_n";
        }
    }
    c.until = {c.fewshot_delimiter};
    if (root["generation_kwargs"]) {
        if (!c.generate) {
            r.fail(root["generation_kwargs"], "generation_kwargs is for output_type generate_until");
        }
        read_generation(r, root["generation_kwargs"], c);
    }
    if (root["filter_list"]) {
        if (!c.generate) {
            r.fail(root["filter_list"], "filter_list is for output_type generate_until");
        }
        read_filters(r, root["filter_list"], c);
    }
    c.metrics = c.generate ? std::vector<std::string>{"exact_match"} : std::vector<std::string>{"acc", "acc_norm"};
    if (root["metric_list"]) {
        read_metrics(r, root["metric_list"], c);
    }
    if (root["metadata"]) {
        r.check_keys(root["metadata"], {"version"}, "metadata");
        if (root["metadata"]["version"]) {
            const YAML::Node & v = root["metadata"]["version"];
            int                whole  = 0;
            double             number = 0;
            if (plain_integer(v, whole)) {
                c.version = whole;
            } else if (v.IsScalar() && v.Tag() != "!" && YAML::convert<double>::decode(v, number)) {
                c.version = number;
            } else {
                c.version = r.text(v, "version");
            }
        }
    }
    return c;
}

// ---- rendering documents --------------------------------------------------------------------

std::string render_template(const DocTemplate & t, const Record & r) {
    jinja::Value doc;
    try {
        doc = jinja::from_json(r.value);
    } catch (const jinja::RenderError & e) {
        throw InputError(fmt::format("{}: {}", r.where, e.what()));
    }
    return jinja::render(t.body, *doc.dict, r.where + ": " + t.origin, jinja::UndefinedOutput::Error);
}

// A template's value for one document: the field of that name if the document has one (a string,
// or a number as text), else the rendered template.
std::string render(const DocTemplate & t, const Record & r) {
    const auto field = r.value.find(t.source);
    if (field != r.value.end()) {
        if (field->is_string()) {
            return field->get<std::string>();
        }
        if (field->is_number()) {
            return field->dump();
        }
        throw InputError(fmt::format("{}: field '{}' ({}) must be a string or a number here", r.where, t.source,
                                     t.origin));
    }
    return render_template(t, r);
}

bool all_digits(const std::string & s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> doc_choices(const CustomTaskConfig & c, const Record & r) {
    if (!c.choice_list.empty()) {
        return c.choice_list;
    }
    const auto field = r.value.find(c.doc_to_choice.source);
    if (field != r.value.end()) {
        if (!field->is_array() || field->empty()) {
            throw InputError(fmt::format("{}: field '{}' must be a non-empty list", r.where, c.doc_to_choice.source));
        }
        std::vector<std::string> out;
        for (const ojson & item : *field) {
            out.push_back(item.is_string() ? item.get<std::string>() : item.dump());
        }
        return out;
    }
    const std::string        where   = r.where + ": " + c.doc_to_choice.origin;
    std::vector<std::string> choices = parse_python_list(render(c.doc_to_choice, r), where);
    if (choices.empty()) {
        throw InputError(where + ": gives no choices");
    }
    return choices;
}

TaskDoc custom_doc(const CustomTaskConfig & c, const Record & r) {
    TaskDoc d;
    d.where    = r.where;
    d.identity = r.value.dump();
    d.text     = render(c.doc_to_text, r);
    if (!c.description.source.empty()) {
        d.description = render_template(c.description, r);
    }
    if (c.generate) {
        d.answer = render(c.doc_to_target, r);
        d.target = c.target_delimiter + d.answer;
        return d;
    }
    d.choices = doc_choices(c, r);
    // lm-eval: an integer target (or a template giving digits) indexes the choices, a string is
    // the right choice's text, and it is what a few-shot example shows either way.
    int         index  = -1;
    std::string target;
    if (c.target_is_index) {
        index = c.target_index;
    } else {
        const auto field = r.value.find(c.doc_to_target.source);
        if (field != r.value.end() && field->is_number_integer()) {
            index = field->get<int>();
        } else {
            target = render(c.doc_to_target, r);
            if (all_digits(target) && target.size() < 9) {
                index = std::stoi(target);
            }
        }
    }
    if (index >= 0) {
        if (index >= static_cast<int>(d.choices.size())) {
            throw InputError(fmt::format("{}: doc_to_target gives index {} but there are {} choices", r.where, index,
                                         d.choices.size()));
        }
        d.gold   = index;
        d.target = c.target_delimiter + d.choices[static_cast<size_t>(index)];
    } else {
        const auto it = std::find(d.choices.begin(), d.choices.end(), target);
        if (it == d.choices.end()) {
            throw InputError(fmt::format("{}: doc_to_target gives \"{}\", which is none of the choices", r.where, target));
        }
        d.gold   = static_cast<int>(it - d.choices.begin());
        d.target = c.target_delimiter + target;
    }
    return d;
}

std::string split_path(const CustomTaskConfig & c, const std::string & split) {
    if (c.dataset_is_file) {
        return c.dataset_path;
    }
    for (const char * ext : {".jsonl", ".json"}) {
        const std::string path = (std::filesystem::path(c.dataset_path) / (split + ext)).string();
        if (is_file(path)) {
            return path;
        }
    }
    throw InputError(fmt::format("{}: no {} split (expected {}.jsonl or {}.json in {})", c.file, split, split, split,
                                 c.dataset_path));
}

std::vector<TaskDoc> read_docs(const CustomTaskConfig & c, const std::string & path) {
    std::vector<TaskDoc> docs;
    for_each_record(path, [&](Record && r) {
        docs.push_back(custom_doc(c, r));
        return true;
    });
    return docs;
}

// ---- Python literals ------------------------------------------------------------------------

class LiteralParser {
public:
    LiteralParser(const std::string & text, const std::string & where) : s_(text), where_(where) {}

    std::vector<std::string> list() {
        skip_space();
        if (at_end() || (s_[i_] != '[' && s_[i_] != '(')) {
            fail("expected a list");
        }
        const char close = s_[i_] == '[' ? ']' : ')';
        i_++;
        std::vector<std::string> items;
        for (;;) {
            skip_space();
            if (!at_end() && s_[i_] == close) {
                i_++;
                break;
            }
            items.push_back(item());
            skip_space();
            if (!at_end() && s_[i_] == ',') {
                i_++;
            } else if (at_end() || s_[i_] != close) {
                fail(fmt::format("expected ',' or '{}'", close));
            }
        }
        skip_space();
        if (!at_end()) {
            fail("unexpected text after the list");
        }
        return items;
    }

private:
    bool at_end() const { return i_ >= s_.size(); }
    void skip_space() {
        while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
            i_++;
        }
    }
    [[noreturn]] void fail(const std::string & what) const {
        throw InputError(fmt::format("{}: doc_to_choice must give a Python list literal: {} at character {} of {}", where_,
                                     what, i_ + 1, s_));
    }

    std::string item() {
        if (at_end()) {
            fail("unexpected end");
        }
        if (s_[i_] == '\'' || s_[i_] == '"') {
            return string_literal();
        }
        // A number, as str() prints it: Python keeps an int's digits, and these come from repr.
        const size_t start = i_;
        while (!at_end() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == '-' ||
                             s_[i_] == '+')) {
            i_++;
        }
        if (i_ == start) {
            fail("expected a string or a number");
        }
        const std::string number = s_.substr(start, i_ - start);
        double            v      = 0;
        if (!jinja::parse_float(number, v)) {
            fail("expected a string or a number");
        }
        return number;
    }

    unsigned hex(size_t digits) {
        if (i_ + digits > s_.size()) {
            fail("truncated escape");
        }
        unsigned v = 0;
        for (size_t k = 0; k < digits; k++) {
            const char c = s_[i_++];
            v *= 16;
            if (c >= '0' && c <= '9') v += static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') v += static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v += static_cast<unsigned>(c - 'A' + 10);
            else fail("bad hex escape");
        }
        return v;
    }

    std::string string_literal() {
        const char  quote = s_[i_++];
        std::string out;
        for (;;) {
            if (at_end()) {
                fail("unterminated string");
            }
            const char c = s_[i_++];
            if (c == quote) {
                return out;
            }
            if (c != '\\') {
                out += c;
                continue;
            }
            if (at_end()) {
                fail("unterminated string");
            }
            const char e = s_[i_++];
            switch (e) {
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'v': out += '\v'; break;
            case '\n': break;  // a line continuation
            case 'x': out += jinja::encode_utf8(hex(2)); break;
            case 'u': out += jinja::encode_utf8(hex(4)); break;
            case 'U': out += jinja::encode_utf8(hex(8)); break;
            default:
                if (e >= '0' && e <= '7') {
                    unsigned v = static_cast<unsigned>(e - '0');
                    for (int k = 0; k < 2 && !at_end() && s_[i_] >= '0' && s_[i_] <= '7'; k++) {
                        v = v * 8 + static_cast<unsigned>(s_[i_++] - '0');
                    }
                    out += jinja::encode_utf8(v);
                } else {
                    out += '\\';  // unknown escapes stay as written
                    out += e;
                }
            }
        }
    }

    const std::string & s_;
    const std::string & where_;
    size_t              i_ = 0;
};

}  // namespace

std::vector<std::string> parse_python_list(const std::string & text, const std::string & where) {
    return LiteralParser(text, where).list();
}

TaskSpec custom_task_spec(const std::string & yaml_path) {
    auto     config = std::make_shared<CustomTaskConfig>(read_config(yaml_path));
    TaskSpec s;
    s.name                = config->task;
    s.family              = "yaml";
    s.default_num_fewshot = config->num_fewshot;
    s.custom              = std::move(config);
    return s;
}

Task load_custom_task(const TaskSpec & spec, int num_fewshot) {
    const CustomTaskConfig & c = *spec.custom;
    Task                     t;
    t.name              = spec.name;
    t.version           = c.version;
    t.scoring           = c.generate ? Scoring::ExactMatch : Scoring::MultipleChoice;
    t.fewshot_delimiter = c.fewshot_delimiter;
    t.choice_delimiter  = c.target_delimiter;
    t.until             = c.until;
    t.max_gen_toks      = c.max_gen_toks;
    t.answer_regex      = c.answer_regex;
    t.answer_group_select = c.answer_group_select;
    t.answer_fallback   = c.answer_fallback;
    t.metrics           = c.metrics;
    const std::string eval_split = c.test_split.empty() ? c.validation_split : c.test_split;
    t.eval_docs = read_docs(c, split_path(c, eval_split));
    // The harness's rule: examples from the training split when there is one, else k + 1 drawn
    // from the validation (or test) split and the evaluated document left out of them.
    std::string pool;
    if (!c.fewshot_split.empty()) {
        pool          = c.fewshot_split;
        t.shot_source = pool == eval_split ? ShotSource::SampleExcluding : ShotSource::Sample;
    } else if (!c.training_split.empty()) {
        pool          = c.training_split;
        t.shot_source = ShotSource::Sample;
    } else {
        pool          = c.validation_split.empty() ? c.test_split : c.validation_split;
        t.shot_source = ShotSource::SampleExcluding;
    }
    if (c.first_n) {
        t.shot_source = t.shot_source == ShotSource::SampleExcluding ? ShotSource::FirstNExcluding : ShotSource::FirstN;
    }
    if (num_fewshot > 0) {
        t.shot_split = split_path(c, pool);
        t.shot_docs  = read_docs(c, t.shot_split);
    }
    return t;
}

bool is_yaml_task_file(const std::string & name) {
    const std::string ext = std::filesystem::path(name).extension().string();
    return ext == ".yaml" || ext == ".yml";
}

std::vector<TaskSpec> resolve_task_list(const std::vector<std::string> & names, const std::string & data_dir) {
    for (const std::string & name : names) {
        if (!is_yaml_task_file(name) && data_dir.empty()) {
            const std::vector<std::string> builtins = builtin_task_names();
            if (std::find(builtins.begin(), builtins.end(), name) == builtins.end() && name != "mmlu" &&
                name != "leaderboard" && name.rfind("hendrycksTest-", 0) != 0) {
                (void) resolve_tasks({name}, data_dir);  // no such task: says so, with the closest name
            }
            throw InputError(fmt::format(
                "--data-dir is needed for the built-in task '{}' (DATA_DIR/DATASET/SPLIT.jsonl)", name));
        }
    }
    std::vector<TaskSpec> specs;
    for (const std::string & name : names) {
        if (is_yaml_task_file(name)) {
            specs.push_back(custom_task_spec(name));
        } else {
            for (TaskSpec & s : resolve_tasks({name}, data_dir)) {
                specs.push_back(std::move(s));
            }
        }
    }
    // A task named twice (e.g. `mmlu` and one of its subjects) runs once.
    std::vector<TaskSpec> unique;
    for (TaskSpec & s : specs) {
        if (std::none_of(unique.begin(), unique.end(), [&](const TaskSpec & u) { return u.name == s.name; })) {
            unique.push_back(std::move(s));
        }
    }
    return unique;
}

}  // namespace paft
