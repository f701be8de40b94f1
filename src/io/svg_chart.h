// Charts as standalone SVG documents: grouped bar charts (one bar per series in each category)
// and line charts (one line per series across the categories), each panel with a title, axis
// labels and a legend. Text is escaped and numbers are written with fixed decimals, so the same
// charts always give the same bytes.
#pragma once

#include <string>
#include <vector>

namespace paft {

enum class ChartStyle { bars, lines };

struct ChartSeries {
    std::string         name;    // its legend entry
    std::vector<double> values;  // one per category; NaN: no value (no bar, a gap in a line)
};

struct Chart {
    ChartStyle               style = ChartStyle::bars;
    std::string              title, x_label, y_label;
    std::vector<std::string> categories;    // along the x axis
    std::vector<ChartSeries> series;        // one colour each, in legend order
    double                   y_max = 1.0;   // the y axis runs from 0 to y_max; values are clipped to it
    std::string              value_suffix;  // after tick labels and values, e.g. "%"
};

// One SVG document with the charts stacked top to bottom. std::invalid_argument when a series
// does not have one value per category or y_max is not positive.
std::string render_svg(const std::vector<Chart> & charts);

// Text for SVG/XML content or attribute values: & < > " ' escaped, invalid UTF-8 replaced by
// U+FFFD, characters XML does not allow dropped.
std::string xml_escape(const std::string & text);

}  // namespace paft
