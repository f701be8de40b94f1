#include "merge/sparsity_report.h"

#include "io/svg_chart.h"

#include <fmt/format.h>

#include <limits>
#include <set>

namespace paft {

using nlohmann::ordered_json;

namespace {

ordered_json share_json(const SparsityShare & s) {
    return {{"near_zero", s.near_zero}, {"total", s.total}, {"sparsity", s.share()}};
}

}  // namespace

double percent_or_nan(const SparsityShare & s) {
    return s.total > 0 ? 100.0 * s.share() : std::numeric_limits<double>::quiet_NaN();
}

ordered_json sparsity_json(const std::vector<LabeledSparsity> & inputs, double threshold) {
    ordered_json out = {{"threshold", threshold}, {"inputs", ordered_json::array()}};
    for (const LabeledSparsity & in : inputs) {
        const SparsityReport & r = in.report;
        ordered_json           j = {{"label", in.label}, {"path", r.path}, {"kind", delta_kind_name(r.kind)}};
        j.update(share_json(overall_share(r)));
        j["modules"] = ordered_json::array();
        for (const std::string & m : sparsity_modules({r})) {
            ordered_json e = {{"module", m}};
            e.update(share_json(module_share(r, m)));
            j["modules"].push_back(e);
        }
        j["layers"] = ordered_json::array();
        for (int l : sparsity_layers(r)) {
            ordered_json e = {{"layer", l}};
            e.update(share_json(layer_share(r, l)));
            j["layers"].push_back(e);
        }
        j["entries"] = ordered_json::array();
        for (const SparsityCount & c : r.counts) {
            ordered_json e = {{"layer", c.layer >= 0 ? ordered_json(c.layer) : ordered_json(nullptr)},
                              {"module", c.module}};
            e.update(share_json({c.near_zero, c.total}));
            j["entries"].push_back(e);
        }
        out["inputs"].push_back(j);
    }
    return out;
}

// Figure 2 as bars per module type (and overall), then each layer's share as lines.
std::string sparsity_svg(const std::vector<LabeledSparsity> & inputs, double threshold) {
    std::vector<SparsityReport> reports;
    std::set<int>               layers;
    for (const LabeledSparsity & in : inputs) {
        reports.push_back(in.report);
        for (int l : sparsity_layers(in.report)) {
            layers.insert(l);
        }
    }
    Chart bars;
    bars.title        = fmt::format("Near-zero delta entries (|δ| < {:g}) per module", threshold);
    bars.x_label      = "module";
    bars.y_label      = "near-zero entries (%)";
    bars.categories   = sparsity_modules(reports);
    bars.categories.push_back("overall");
    bars.y_max        = 100;
    bars.value_suffix = "%";
    Chart lines       = bars;
    lines.style       = ChartStyle::lines;
    lines.title       = fmt::format("Near-zero delta entries (|δ| < {:g}) per layer, all modules", threshold);
    lines.x_label     = "layer";
    lines.categories.clear();
    for (int l : layers) {
        lines.categories.push_back(std::to_string(l));
    }
    for (const LabeledSparsity & in : inputs) {
        ChartSeries b{in.label, {}}, l{in.label, {}};
        for (size_t i = 0; i + 1 < bars.categories.size(); i++) {
            b.values.push_back(percent_or_nan(module_share(in.report, bars.categories[i])));
        }
        b.values.push_back(percent_or_nan(overall_share(in.report)));
        for (int layer : layers) {
            l.values.push_back(percent_or_nan(layer_share(in.report, layer)));
        }
        bars.series.push_back(b);
        lines.series.push_back(l);
    }
    std::vector<Chart> charts = {bars};
    if (!layers.empty()) {
        charts.push_back(lines);
    }
    return render_svg(charts);
}

}  // namespace paft
