// Sparsity reports of several labelled inputs as JSON and as the PAFT paper's Figure 2 (SVG),
// shared by `paft sparsity` and `paft run`'s report.
#pragma once

#include "merge/sparsity.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace paft {

struct LabeledSparsity {
    std::string    label;
    SparsityReport report;
};

// {"threshold", "inputs": [{label, path, kind, near_zero, total, sparsity, modules, layers, entries}]}
nlohmann::ordered_json sparsity_json(const std::vector<LabeledSparsity> & inputs, double threshold);

// Bars per module type (and overall), then each layer's share as lines; one series per input.
std::string sparsity_svg(const std::vector<LabeledSparsity> & inputs, double threshold);

// A share in percent; NaN where the input has no such entries (no bar, a gap in a line).
double percent_or_nan(const SparsityShare & share);

}  // namespace paft
