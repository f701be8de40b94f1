#include "run/run_recipe.h"

#include "core/error.h"
#include "io/yaml_file.h"

#include <fmt/format.h>

#include <filesystem>
#include <functional>
#include <map>

namespace paft {
namespace {

const std::vector<std::string> kOwnSections = {"merges", "evaluation", "synth", "export"};

int line_of(const YAML::Node & node) {
    return node.Mark().line + 1;
}

// A scalar read as T (int64 / int / uint64 / string), the message naming FILE:LINE: KEY.
template <typename T>
T scalar_as(const YAML::Node & node, const std::string & label) {
    if (!node.IsScalar()) {
        throw InputError(fmt::format("{}: expected a single value", label));
    }
    try {
        return node.as<T>();
    } catch (const YAML::Exception &) {
        throw InputError(fmt::format("{}: '{}' is not a valid value", label, node.Scalar()));
    }
}

int positive_int(const YAML::Node & node, const std::string & label) {
    const int64_t v = scalar_as<int64_t>(node, label);
    if (v < 1 || v > 1'000'000'000) {
        throw InputError(fmt::format("{}: {} must be a positive integer", label, v));
    }
    return (int) v;
}

// Calls `on_key(name, value, label)` for each key of a section mapping; unknown keys are the
// callee's to refuse.
void for_each_key(const std::string & path, const YAML::Node & map, const std::string & section,
                  const std::function<void(const std::string &, const YAML::Node &, const std::string &)> & on_key) {
    if (map.IsNull()) {
        return;
    }
    if (!map.IsMap()) {
        throw InputError(fmt::format("{}:{}: {}: expected a section of keys", path, line_of(map), section));
    }
    for (auto it = map.begin(); it != map.end(); ++it) {
        const YAML::Node  key   = it->first;
        const YAML::Node  value = it->second;
        const std::string label = fmt::format("{}:{}: {}.{}", path, line_of(key), section, key.Scalar());
        on_key(key.Scalar(), value, label);
    }
}

[[noreturn]] void unknown(const std::string & label, const std::string & known) {
    throw InputError(fmt::format("{}: unknown key (known: {})", label, known));
}

std::vector<std::string> task_list(const YAML::Node & value, const std::string & label) {
    std::vector<std::string> tasks;
    if (value.IsSequence()) {
        for (const YAML::Node & item : value) {
            tasks.push_back(scalar_as<std::string>(item, label));
        }
    } else {
        // "a,b" as paft eval --tasks takes it
        const std::string text = scalar_as<std::string>(value, label);
        for (size_t start = 0; start <= text.size();) {
            const size_t end = std::min(text.find(',', start), text.size());
            if (end > start) {
                tasks.push_back(text.substr(start, end - start));
            }
            start = end + 1;
        }
    }
    if (tasks.empty()) {
        throw InputError(fmt::format("{}: give at least one task", label));
    }
    return tasks;
}

RunEvaluation read_evaluation(const std::string & path, const YAML::Node & map) {
    RunEvaluation e;
    for_each_key(path, map, "evaluation", [&](const std::string & name, const YAML::Node & v, const std::string & label) {
        if (name == "tasks") {
            e.tasks = task_list(v, label);
        } else if (name == "data_dir") {
            e.data_dir = scalar_as<std::string>(v, label);
        } else if (name == "num_fewshot") {
            const int64_t n = scalar_as<int64_t>(v, label);
            if (n < 0) {
                throw InputError(fmt::format("{}: {} must be 0 or more", label, n));
            }
            e.num_fewshot = (int) n;
        } else if (name == "limit") {
            e.limit = positive_int(v, label);
        } else if (name == "winrate") {
            e.winrate = scalar_as<std::string>(v, label);
        } else if (name == "max_new_tokens") {
            e.max_new_tokens = positive_int(v, label);
        } else if (name == "batch") {
            e.batch = positive_int(v, label);
        } else {
            unknown(label, "tasks, data_dir, num_fewshot, limit, winrate, max_new_tokens, batch");
        }
    });
    return e;
}

RunExport read_export(const std::string & path, const YAML::Node & map) {
    RunExport x;
    for_each_key(path, map, "export", [&](const std::string & name, const YAML::Node & v, const std::string & label) {
        if (name == "types" || name == "type") {
            for (const std::string & t : task_list(v, label)) {
                const std::optional<ExportType> type = parse_export_type(t);
                if (!type) throw InputError(fmt::format("{}: '{}' is not one of {}", label, t, export_type_list()));
                x.types.push_back(*type);
            }
        } else if (name == "rows") {
            x.rows = task_list(v, label);
        } else {
            unknown(label, "types, rows");
        }
    });
    if (x.types.empty()) throw InputError(fmt::format("{}: export: types: name at least one type ({})", path, export_type_list()));
    return x;
}

WorldOptions read_synth(const std::string & path, const YAML::Node & map) {
    WorldOptions w;
    const std::map<std::string, int *> sizes = {
        {"people", &w.people},           {"heldout_people", &w.heldout_people}, {"corpus_docs", &w.corpus_docs},
        {"sft_examples", &w.sft_examples}, {"pref_examples", &w.pref_examples}, {"judge_prompts", &w.judge_prompts},
        {"vocab_size", &w.vocab_size}};
    for_each_key(path, map, "synth", [&](const std::string & name, const YAML::Node & v, const std::string & label) {
        if (name == "seed") {
            w.seed = scalar_as<uint64_t>(v, label);
        } else if (auto it = sizes.find(name); it != sizes.end()) {
            *it->second = positive_int(v, label);
        } else {
            unknown(label, "seed, people, heldout_people, corpus_docs, sft_examples, pref_examples, judge_prompts, "
                           "vocab_size");
        }
    });
    return w;
}

std::vector<MergeOptions> read_merges(const std::string & path, const YAML::Node & list) {
    if (!list.IsSequence() || list.size() == 0) {
        throw InputError(fmt::format("{}:{}: merges: expected a list of merges, e.g. - {{method: ties, densities: "
                                     "[0.5, 0.5]}}",
                                     path, line_of(list)));
    }
    std::vector<MergeOptions> merges;
    for (const YAML::Node & item : list) {
        if (!item.IsMap()) {
            throw InputError(fmt::format("{}:{}: merges: each item is a mapping of merge keys (method, weights, "
                                         "densities, lambda, t, seed)",
                                         path, line_of(item)));
        }
        MergeOptions m = read_merge_options(path, item);
        try {
            validate(m, 2);
        } catch (const InputError & e) {
            throw InputError(fmt::format("{}:{}: merges: {}", path, line_of(item), e.what()));
        }
        for (const MergeOptions & other : merges) {
            if (other.method == m.method) {
                throw InputError(fmt::format("{}:{}: merges: {} is listed twice (each method is one row of the table)",
                                             path, line_of(item), m.method));
            }
        }
        merges.push_back(std::move(m));
    }
    return merges;
}

// The world's files stand in for what the recipe leaves empty.
void fill_from_world(RunRecipe & r) {
    const WorldFiles files = world_files(r.train.output_dir + "/world");
    auto fill = [](std::string & field, const std::string & value) {
        if (field.empty()) {
            field = value;
        }
    };
    fill(r.train.sft.train_data, files.sft);
    fill(r.train.preference.train_data, files.prefs);
    if (r.evaluation.tasks.empty()) {
        r.evaluation.tasks = files.task_files;
    }
    fill(r.evaluation.winrate, files.judge);
}

}  // namespace

std::vector<MergeOptions> default_merges() {
    std::vector<MergeOptions> merges(5);
    merges[0].method    = "slerp";
    merges[0].t         = 0.5;
    merges[1].method    = "task_arithmetic";
    merges[2].method    = "ties";
    merges[2].densities = {0.5, 0.5};
    merges[3].method    = "dare_ties";
    merges[3].densities = {0.5, 0.5};
    merges[4].method    = "linear";
    merges[4].weights   = {0.5, 0.5};
    return merges;
}

RunRecipe read_run_recipe(const std::string & path, const std::string & output_dir) {
    RunRecipe r;
    r.path  = path;
    r.train = parallel_defaults(Method::dpo);
    apply_parallel_recipe(path, r.train, kOwnSections);
    const YAML::Node root = load_yaml_file(path, "recipe");
    for (auto it = root.begin(); it != root.end(); ++it) {
        if (it->first.Scalar() == "merge") {
            throw InputError(fmt::format("{}:{}: merge: paft run takes a list of merges under `merges:` (each with "
                                         "its method and settings), not paft parallel's single `merge:`",
                                         path, line_of(it->first)));
        }
    }
    r.merges = root["merges"] ? read_merges(path, root["merges"]) : default_merges();
    if (root["evaluation"]) {
        r.evaluation = read_evaluation(path, root["evaluation"]);
    }
    if (root["export"]) {
        r.exports = read_export(path, root["export"]);
    }
    if (root["synth"]) {
        r.synth = read_synth(path, root["synth"]);
    }
    if (!output_dir.empty()) {
        r.train.output_dir = output_dir;
    }
    if (r.train.output_dir.empty()) {
        throw InputError(fmt::format("{}: output_dir: name the run's folder (its report and every model)", path));
    }
    if (r.train.sft.model.empty()) {
        throw InputError(fmt::format("{}: model_name_or_path: name the base model's folder", path));
    }
    if (r.synth) {
        fill_from_world(r);
    }
    for (auto [data, what] : {std::pair{&r.train.sft.train_data, "sft: train_data"},
                              {&r.train.preference.train_data, "preference: train_data"}}) {
        if (data->empty()) {
            throw InputError(fmt::format("{}: {}: name the dataset (or add a synth: section)", path, what));
        }
    }
    if (r.evaluation.tasks.empty()) {
        throw InputError(fmt::format("{}: evaluation: tasks: name the tasks every model is evaluated on", path));
    }
    if (r.train.sft.l1_lambda <= 0) {
        throw InputError(fmt::format("{}: sft: l1_lambda: the sparse SFT needs a positive L1 penalty (the paper "
                                     "uses 1e-4 to 1e-3)",
                                     path));
    }
    r.train.sft.resume = r.train.preference.resume = true;  // a stage cut short continues
    // Where the experiment puts them (experiment.h); set here so that the checks below pass.
    r.train.sft.output_dir        = r.train.output_dir + "/adapters/sft-sparse";
    r.train.preference.output_dir = r.train.output_dir + "/adapters/" + method_name(r.train.preference.method);
    validate(r.train.sft);
    validate(r.train.preference);
    return r;
}

}  // namespace paft
