// paft sparsity: the PAFT paper's Figure 2. The share of near-zero entries (|delta| < threshold)
// of adapters' deltas (s * B * A) and of fine-tuned models' deltas against a base (W - W_base),
// per module type and layer: a table on stdout, optionally JSON and an SVG chart.
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/fs.h"
#include "merge/sparsity.h"
#include "merge/sparsity_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

namespace paft {
namespace {

using ordered_json = nlohmann::ordered_json;

using Input = LabeledSparsity;

// The folder's own name ("runs/sft/" -> "sft"); the paths as given when two names are equal.
std::vector<std::string> default_labels(const std::vector<std::string> & paths) {
    std::vector<std::string> labels;
    std::set<std::string>    seen;
    bool                     clash = false;
    for (const std::string & p : paths) {
        std::filesystem::path path = std::filesystem::path(p).lexically_normal();
        std::string           name = path.filename().string();
        if (name.empty()) {
            name = path.parent_path().filename().string();
        }
        if (name.empty() || name == "." || name == "..") {
            name = p;
        }
        clash = clash || !seen.insert(name).second;
        labels.push_back(name);
    }
    return clash ? paths : labels;
}

std::vector<std::string> parse_labels(const std::string & list, size_t inputs) {
    std::vector<std::string> labels;
    std::stringstream        ss(list);
    for (std::string item; std::getline(ss, item, ',');) {
        labels.push_back(item);
    }
    if (labels.size() != inputs) {
        throw InputError(fmt::format("--labels gives {} names for {} inputs", labels.size(), inputs));
    }
    return labels;
}

std::string percent(const SparsityShare & s) {
    return s.total > 0 ? fmt::format("{:.2f}%", 100.0 * s.share()) : "-";
}

// Rows of cells as columns two spaces apart: the first (names) left-aligned, the numbers right-aligned.
std::string format_table(const std::vector<std::vector<std::string>> & rows) {
    std::vector<size_t> widths;
    for (const auto & row : rows) {
        widths.resize(std::max(widths.size(), row.size()));
        for (size_t i = 0; i < row.size(); i++) {
            widths[i] = std::max(widths[i], row[i].size());
        }
    }
    std::string out;
    for (const auto & row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); i++) {
            line += i == 0 ? fmt::format("{:<{}}", row[i], widths[i]) : fmt::format("  {:>{}}", row[i], widths[i]);
        }
        out += line + "\n";
    }
    return out;
}

// The modules that occur inside layers, in display order.
std::vector<std::string> layer_modules(const SparsityReport & report) {
    std::vector<std::string> modules;
    for (const std::string & m : sparsity_modules({report})) {
        for (const SparsityCount & c : report.counts) {
            if (c.module == m && c.layer >= 0) {
                modules.push_back(m);
                break;
            }
        }
    }
    return modules;
}

std::string text_report(const std::vector<Input> & inputs, double threshold) {
    std::vector<SparsityReport> reports;
    for (const Input & in : inputs) {
        reports.push_back(in.report);
    }
    std::string out = fmt::format("share of near-zero delta entries, |delta| < {:g} (adapter: s*B*A, model: W - "
                                  "W_base)\n\n",
                                  threshold);
    std::vector<std::vector<std::string>> rows = {{"module"}};
    for (const Input & in : inputs) {
        rows[0].push_back(in.label);
    }
    for (const std::string & m : sparsity_modules(reports)) {
        rows.push_back({m});
        for (const Input & in : inputs) {
            rows.back().push_back(percent(module_share(in.report, m)));
        }
    }
    rows.push_back({"overall"});
    for (const Input & in : inputs) {
        rows.back().push_back(percent(overall_share(in.report)));
    }
    out += format_table(rows);
    for (const Input & in : inputs) {
        const std::vector<std::string> modules = layer_modules(in.report);
        if (modules.empty()) {
            continue;
        }
        out += fmt::format("\nper layer: {} ({}, {})\n", in.label, delta_kind_name(in.report.kind), in.report.path);
        std::vector<std::vector<std::string>> layer_rows = {{"layer"}};
        layer_rows[0].insert(layer_rows[0].end(), modules.begin(), modules.end());
        layer_rows[0].push_back("all");
        for (int l : sparsity_layers(in.report)) {
            layer_rows.push_back({std::to_string(l)});
            for (const std::string & m : modules) {
                layer_rows.back().push_back(percent(cell_share(in.report, l, m)));
            }
            layer_rows.back().push_back(percent(layer_share(in.report, l)));
        }
        out += format_table(layer_rows);
    }
    return out;
}

void write_stdout(const std::string & text) {
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
        throw RuntimeFailure("cannot write to standard output");
    }
}

}  // namespace

void register_sparsity(CLI::App & app) {
    struct Options {
        std::vector<std::string> paths;
        std::string              base, labels, json, svg;
        double                   threshold = 1e-5;
        int                      threads   = 0;
    };
    auto   opt = std::make_shared<Options>();
    auto * cmd = app.add_subcommand("sparsity", "Share of near-zero delta entries of adapters or fine-tuned models, "
                                                "per module and layer (the PAFT paper's Figure 2)");
    cmd->add_option("paths", opt->paths, "PEFT adapter folders and/or model folders (models need --base)")
        ->required();
    cmd->add_option("--base", opt->base, "Base model folder the model inputs are compared with");
    cmd->add_option("--threshold", opt->threshold, "An entry is near zero when |delta| < threshold")
        ->capture_default_str();
    cmd->add_option("--labels", opt->labels, "Comma-separated names of the inputs (default: folder names)");
    cmd->add_option("--json", opt->json, "Write the counts as JSON to this file ('-': to stdout, instead of the table)");
    cmd->add_option("--svg", opt->svg, "Write a chart (bars per module, lines per layer) to this SVG file");
    cmd->add_option("--threads", opt->threads, "Threads (default: all cores)");
    cmd->callback([opt]() {
        if (!(opt->threshold > 0) || !std::isfinite(opt->threshold)) {
            throw InputError(fmt::format("--threshold must be a positive number, got {}", opt->threshold));
        }
        const std::vector<std::string> labels =
            opt->labels.empty() ? default_labels(opt->paths) : parse_labels(opt->labels, opt->paths.size());
        // Every input is checked before any is measured, so a bad one fails at once.
        for (const std::string & path : opt->paths) {
            if (classify_delta_source(path) == DeltaKind::model && opt->base.empty()) {
                throw InputError(fmt::format("{} is a model folder: its delta needs the base model (--base DIR)", path));
            }
        }
        if (!opt->base.empty() && classify_delta_source(opt->base) != DeltaKind::model) {
            throw InputError(fmt::format("--base {}: the base must be a model folder, not an adapter", opt->base));
        }
        if (opt->threads > 0) {
            omp_set_num_threads(opt->threads);
        }
        std::vector<Input> inputs;
        for (size_t i = 0; i < opt->paths.size(); i++) {
            std::unique_ptr<Progress> progress;
            const bool                adapter = classify_delta_source(opt->paths[i]) == DeltaKind::adapter;
            auto report = measure_sparsity(opt->paths[i], opt->base, opt->threshold, [&](long done, long total) {
                if (!progress) {
                    progress = std::make_unique<Progress>("sparsity " + labels[i], total, adapter ? "modules" : "tensors");
                }
                progress->update(done);
            });
            if (progress) {
                progress->finish();
            }
            inputs.push_back({labels[i], std::move(report)});
        }
        const auto dump = [](const ordered_json & j) {
            return j.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
        };
        if (opt->json == "-") {
            write_stdout(dump(sparsity_json(inputs, opt->threshold)));
        } else {
            write_stdout(text_report(inputs, opt->threshold));
            if (!opt->json.empty()) {
                write_file_atomic(opt->json, dump(sparsity_json(inputs, opt->threshold)));
            }
        }
        if (!opt->svg.empty()) {
            write_file_atomic(opt->svg, sparsity_svg(inputs, opt->threshold));
        }
    });
}

}  // namespace paft
