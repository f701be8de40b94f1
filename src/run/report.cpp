#include "run/report.h"

#include "io/fs.h"
#include "io/svg_chart.h"
#include "merge/sparsity_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

namespace paft {
namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The score of a row on a task (NaN when missing).
double row_score(const RowResult & row, const std::string & task) {
    if (!row.scores.contains(task)) {
        return kNaN;
    }
    const ordered_json & m      = row.scores[task];
    const std::string    metric = primary_metric(task, m);
    return m.contains(metric) && m[metric].is_number() ? m[metric].get<double>() : kNaN;
}

// The metric a task's column shows, from the first row that has the task ("" when none has).
std::string column_metric(const std::vector<RowResult> & rows, const std::string & task) {
    for (const RowResult & r : rows) {
        if (r.scores.contains(task)) {
            return primary_metric(task, r.scores[task]);
        }
    }
    return "";
}

double row_average(const RowResult & row, const std::vector<std::string> & tasks) {
    double sum = 0;
    for (const std::string & t : tasks) {
        sum += row_score(row, t);  // a missing score makes the average missing too
    }
    return tasks.empty() ? kNaN : sum / (double) tasks.size();
}

std::string cell(double value) {
    return std::isnan(value) ? "—" : fmt::format("{:.4f}", value);
}

std::string mib(uint64_t bytes) {
    return fmt::format("{:.0f}", (double) bytes / (1024.0 * 1024.0));
}

// Each line of a metrics.jsonl as (step, metrics); missing file: none.
std::vector<ordered_json> read_metrics(const std::string & path) {
    std::vector<ordered_json> lines;
    std::ifstream             in(path);
    std::string               line;
    while (std::getline(in, line)) {
        ordered_json j = ordered_json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.contains("step") && !j.contains("eval_loss")) {
            lines.push_back(std::move(j));
        }
    }
    return lines;
}

// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `x` > 0, so that the axis'
// ticks (fifths of it) are round numbers.
double round_axis_top(double x) {
    const double power = std::pow(10.0, std::floor(std::log10(x)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
        if (m * power >= x) {
            return m * power;
        }
    }
    return 10.0 * power;
}

// One line chart of `metric` by step over the runs that log it; none when no run does.
std::optional<Chart> curve_chart(const std::vector<std::pair<std::string, std::vector<ordered_json>>> & runs,
                                 const std::string & metric, const std::string & title) {
    std::set<long> steps;
    double         top = 0;
    for (const auto & [label, lines] : runs) {
        for (const ordered_json & j : lines) {
            if (j.contains(metric) && j[metric].is_number()) {
                steps.insert(j["step"].get<long>());
                top = std::max(top, j[metric].get<double>());
            }
        }
    }
    if (steps.empty()) {
        return std::nullopt;
    }
    Chart c;
    c.style   = ChartStyle::lines;
    c.title   = title;
    c.x_label = "optimizer step";
    c.y_label = metric;
    c.y_max   = top > 0 ? round_axis_top(top) : 1.0;
    for (long s : steps) {
        c.categories.push_back(std::to_string(s));
    }
    for (const auto & [label, lines] : runs) {
        std::map<long, double> by_step;
        for (const ordered_json & j : lines) {
            if (j.contains(metric) && j[metric].is_number()) {
                by_step[j["step"].get<long>()] = j[metric].get<double>();
            }
        }
        if (by_step.empty()) {
            continue;
        }
        ChartSeries series{label, {}};
        for (long s : steps) {
            series.values.push_back(by_step.count(s) ? by_step[s] : kNaN);
        }
        c.series.push_back(std::move(series));
    }
    return c;
}

std::string curves_svg(const std::vector<std::pair<std::string, std::vector<ordered_json>>> & runs) {
    std::vector<Chart> charts;
    for (const auto & [metric, title] :
         {std::pair{"loss", "Training loss"}, {"rewards/margins", "Preference runs: reward margin (chosen - rejected)"},
          {"rewards/accuracies", "Preference runs: reward accuracy"},
          {"sparsity", "SFT adapters: share of near-zero delta entries"}}) {
        if (auto c = curve_chart(runs, metric, title)) {
            charts.push_back(std::move(*c));
        }
    }
    return charts.empty() ? std::string() : render_svg(charts);
}

// The last logged value of each metric the report shows, per run.
std::string final_metrics_table(const std::vector<std::pair<std::string, std::vector<ordered_json>>> & runs) {
    const std::vector<std::string> metrics = {"loss", "rewards/margins", "rewards/accuracies", "sparsity"};
    std::string out = "| run | steps |";
    for (const std::string & m : metrics) {
        out += " " + m + " |";
    }
    out += "\n|:--|--:|";
    for (size_t i = 0; i < metrics.size(); i++) {
        out += "--:|";
    }
    out += "\n";
    for (const auto & [label, lines] : runs) {
        if (lines.empty()) {
            continue;
        }
        const ordered_json & last = lines.back();
        out += fmt::format("| {} | {} |", label, last["step"].get<long>());
        for (const std::string & m : metrics) {
            out += " " + (last.contains(m) && last[m].is_number() ? fmt::format("{:.4g}", last[m].get<double>()) : "—") +
                   " |";
        }
        out += "\n";
    }
    return out;
}

std::string stages_table(const std::vector<StageRecord> & stages) {
    std::string out = "| stage | this run | seconds | peak memory (MiB) | figures |\n|:--|:--|--:|--:|:--|\n";
    for (const StageRecord & s : stages) {
        std::string figures;
        if (s.info.contains("tokens_per_second")) {
            figures = fmt::format("{} steps, {} tokens, {:.0f} tokens/s", s.info["steps"].get<long>(),
                                  s.info["tokens"].get<long>(), s.info["tokens_per_second"].get<double>());
        } else if (s.info.contains("merged")) {
            figures = fmt::format("{} tensors merged", s.info["merged"].get<long>());
        }
        out += fmt::format("| {} | {} | {:.1f} | {}{} | {} |\n", s.name, s.reused ? "reused" : "ran", s.seconds,
                           mib(s.peak_memory), s.peak_of_process ? " (process)" : "", figures);
    }
    return out;
}

std::string sparsity_table(const std::vector<LabeledSparsity> & inputs) {
    const std::vector<std::string> modules = sparsity_modules([&] {
        std::vector<SparsityReport> reports;
        for (const LabeledSparsity & in : inputs) {
            reports.push_back(in.report);
        }
        return reports;
    }());
    std::string out = "| adapter | overall |";
    std::string rule = "|:--|--:|";
    for (const std::string & m : modules) {
        out += " " + m + " |";
        rule += "--:|";
    }
    out += "\n" + rule + "\n";
    for (const LabeledSparsity & in : inputs) {
        out += fmt::format("| {} | {:.1f}% |", in.label, 100.0 * overall_share(in.report).share());
        for (const std::string & m : modules) {
            const double p = percent_or_nan(module_share(in.report, m));
            out += std::isnan(p) ? " — |" : fmt::format(" {:.1f}% |", p);
        }
        out += "\n";
    }
    return out;
}

ordered_json results_document(const ReportInputs & in, const std::vector<std::string> & tasks) {
    ordered_json columns = ordered_json::object();
    for (const std::string & t : tasks) {
        columns[t] = column_metric(in.rows, t);
    }
    ordered_json rows = ordered_json::array();
    for (const RowResult & r : in.rows) {
        ordered_json scores = ordered_json::object();
        for (const std::string & t : tasks) {
            const double v = row_score(r, t);
            scores[t]      = std::isnan(v) ? ordered_json() : ordered_json(v);
        }
        const double avg = row_average(r, tasks);
        ordered_json row = {{"id", r.row.id},
                            {"group", r.row.group},
                            {"label", r.row.label},
                            {"model", r.row.model},
                            {"adapters", r.row.adapters},
                            {"scores", scores},
                            {"average", std::isnan(avg) ? ordered_json() : ordered_json(avg)},
                            {"all_metrics", r.scores}};
        if (r.win_rate) {
            row["win_rate"] = {{"win_rate", r.win_rate->win_rate}, {"std_error", r.win_rate->std_error},
                               {"cases", r.win_rate->cases},       {"wins", r.win_rate->wins},
                               {"ties", r.win_rate->ties}};
        }
        rows.push_back(row);
    }
    ordered_json stages = ordered_json::array();
    for (const StageRecord & s : in.stages) {
        ordered_json j = stage_record_json(s);
        j["reused"]    = s.reused;
        stages.push_back(j);
    }
    return {{"recipe", in.recipe.path}, {"columns", columns}, {"rows", rows}, {"stages", stages},
            {"seconds", in.seconds}};
}

}  // namespace

std::string primary_metric(const std::string & task, const ordered_json & metrics) {
    static const std::map<std::string, std::string> leaderboard = {
        {"arc_challenge", "acc_norm"}, {"arc_easy", "acc_norm"}, {"hellaswag", "acc_norm"},
        {"truthfulqa_mc", "mc2"},      {"mmlu", "acc"},          {"winogrande", "acc"},
        {"gsm8k", "acc"}};
    if (auto it = leaderboard.find(task); it != leaderboard.end() && metrics.contains(it->second)) {
        return it->second;
    }
    for (auto it = metrics.begin(); it != metrics.end(); ++it) {
        const std::string & key = it.key();
        if (key.size() < 7 || key.compare(key.size() - 7, 7, "_stderr") != 0) {
            return key;
        }
    }
    return "";
}

std::vector<std::string> comparison_tasks(const std::vector<RowResult> & rows) {
    std::vector<std::string> tasks;
    for (const RowResult & r : rows) {
        if (r.scores.empty()) {
            continue;
        }
        const bool has_mmlu = r.scores.contains("mmlu");
        for (auto it = r.scores.begin(); it != r.scores.end(); ++it) {
            if (!(has_mmlu && it.key().rfind("hendrycksTest-", 0) == 0)) {
                tasks.push_back(it.key());
            }
        }
        break;
    }
    return tasks;
}

std::string comparison_table(const std::vector<RowResult> & rows, const std::vector<std::string> & tasks) {
    const bool  judged = std::any_of(rows.begin(), rows.end(), [](const RowResult & r) { return r.win_rate; });
    std::string out    = "| Method |";
    std::string rule   = "|:--|";
    for (const std::string & t : tasks) {
        out += " " + t + " |";
        rule += "--:|";
    }
    out += " Average |";
    rule += "--:|";
    if (judged) {
        out += " Win rate |";
        rule += "--:|";
    }
    out += "\n" + rule + "\n";
    std::string group;
    const size_t columns = tasks.size() + 1 + (judged ? 1 : 0);
    for (const RowResult & r : rows) {
        if (r.row.group != group && r.row.group != "Base") {
            group = r.row.group;
            out += "| **" + group + "** |";
            for (size_t i = 0; i < columns; i++) {
                out += " |";
            }
            out += "\n";
        }
        out += "| " + r.row.label + " |";
        for (const std::string & t : tasks) {
            out += " " + cell(row_score(r, t)) + " |";
        }
        out += " " + cell(row_average(r, tasks)) + " |";
        if (judged) {
            out += " " + (r.win_rate ? cell(r.win_rate->win_rate) : std::string("—")) + " |";
        }
        out += "\n";
    }
    return out;
}

std::string write_report(const std::string & out_dir, const ReportInputs & in, std::string & table) {
    const std::vector<std::string> tasks = comparison_tasks(in.rows);
    table                                = comparison_table(in.rows, tasks);

    std::vector<LabeledSparsity> sparsity;
    for (const auto & [label, dir] : in.adapters) {
        sparsity.push_back({label, adapter_sparsity(dir, in.recipe.train.sft.sparsity_threshold)});
    }
    const double threshold = in.recipe.train.sft.sparsity_threshold;
    write_file_atomic(out_dir + "/sparsity.svg", sparsity_svg(sparsity, threshold));
    write_file_atomic(out_dir + "/sparsity.json", sparsity_json(sparsity, threshold).dump(2) + "\n");

    std::vector<std::pair<std::string, std::vector<ordered_json>>> runs;
    for (const auto & [label, path] : in.curves) {
        runs.emplace_back(label, read_metrics(path));
    }
    const std::string curves = curves_svg(runs);
    if (!curves.empty()) {
        write_file_atomic(out_dir + "/curves.svg", curves);
    }

    const RunRecipe & r = in.recipe;
    std::string       md;
    md += fmt::format("# PAFT run: {}\n\n", out_dir);
    md += fmt::format("Recipe `{}` (copied to recipe.yaml). Base model `{}`; SFT data `{}`; preference data `{}` "
                      "({}); L1 penalty of the sparse SFT {:g}.\n\n",
                      r.path, r.train.sft.model, r.train.sft.train_data, r.train.preference.train_data,
                      method_name(r.train.preference.method), r.train.sft.l1_lambda);
    md += "## Comparison\n\n";
    md += "Each column is a task's score (";
    for (size_t i = 0; i < tasks.size(); i++) {
        md += fmt::format("{}{}: {}", i ? ", " : "", tasks[i], column_metric(in.rows, tasks[i]));
    }
    md += "); Average is their mean";
    if (!r.evaluation.winrate.empty()) {
        md += fmt::format("; Win rate is the share of the {} held-out prompts of `{}` on which the judge prefers "
                          "the model's answer to the reference answer (ties count half), not part of the average",
                          in.rows.empty() || !in.rows[0].win_rate ? 0 : in.rows[0].win_rate->cases,
                          r.evaluation.winrate);
    }
    md += ".\n\n" + table + "\n";
    md += "## Sparsity of the adapters\n\n";
    md += fmt::format("Share of the entries of each adapter's delta s·B·A with |δ| < {:g} (the paper's Figure 2).\n\n",
                      threshold);
    md += "![sparsity](sparsity.svg)\n\n" + sparsity_table(sparsity) + "\n";
    md += "## Training\n\n";
    if (!curves.empty()) {
        md += "![curves](curves.svg)\n\n";
    }
    md += "Last logged values:\n\n" + final_metrics_table(runs) + "\n";
    md += "## Stages\n\n";
    md += fmt::format("Wall time and peak resident memory of each stage; the whole run took {:.1f} s.\n\n",
                      in.seconds);
    md += stages_table(in.stages) + "\n";
    md += "## Files\n\n"
          "- `adapters/`: the SFT, sparse SFT and preference LoRA adapters (PEFT format), each with its "
          "metrics.jsonl and paft_recipe.yaml\n"
          "- `sequential/`: for each SFT adapter, the SFT model, the preference adapter trained from it, and the "
          "merged model\n"
          "- `merged/`: the two parallel adapters merged into the base by each method (Hugging Face models)\n"
          "- `eval/`: each model's results (the harness's JSON) and, with a judge, its answers and win rate\n"
          "- `stages/`: each stage's record (fingerprint, time, memory); `results.json`: this report's numbers\n";
    write_file_atomic(out_dir + "/results.json", results_document(in, tasks).dump(2) + "\n");
    const std::string path = out_dir + "/report.md";
    write_file_atomic(path, md);
    return path;
}

}  // namespace paft
