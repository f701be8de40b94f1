#include "io/svg_chart.h"

#include "core/utf8.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace paft {
namespace {

// Tableau's 10 colours, then again.
const char * const kColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                 "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

// Sizes in px. Text widths are estimated (font-size 12 sans-serif: ~7 px per character), since
// an SVG file cannot measure its own text.
constexpr double kCharWidth  = 7.0;
constexpr double kPlotHeight = 260.0;
constexpr double kPlotTop    = 44.0;   // below the title
constexpr double kPlotLeft   = 70.0;   // room for the tick labels and the y label
constexpr double kMinPlotW   = 480.0;
constexpr double kBarWidth   = 14.0;
constexpr double kGroupGap   = 18.0;   // between the bar groups of two categories
constexpr double kLegendRow  = 18.0;
constexpr int    kYTicks     = 5;      // intervals on the y axis

struct Layout {
    double plot_w = 0, spacing = 0;  // spacing: px per category
    int    label_step = 1;           // label every label_step-th category
    bool   rotate     = false;       // category labels at -45 degrees
    double bottom = 0, legend_x = 0, width = 0, height = 0;
};

double text_width(const std::string & text) {
    return kCharWidth * (double) text.size();  // bytes: a fair estimate for Latin text
}

double longest(const std::vector<std::string> & texts) {
    double w = 0;
    for (const std::string & t : texts) {
        w = std::max(w, text_width(t));
    }
    return w;
}

Layout layout_of(const Chart & c) {
    Layout     L;
    const auto n_cat = (double) std::max<size_t>(1, c.categories.size());
    const auto n_ser = (double) std::max<size_t>(1, c.series.size());
    // A category's room: its bars and a gap, or at least 14 px per point; the plot spreads them
    // over kMinPlotW when there are few.
    const double needed = c.style == ChartStyle::bars ? n_ser * kBarWidth + kGroupGap : 14.0;
    L.spacing           = std::max(needed, kMinPlotW / n_cat);
    L.plot_w            = L.spacing * n_cat;
    L.label_step = c.style == ChartStyle::bars ? 1 : (int) std::ceil(28.0 / L.spacing);
    L.rotate     = longest(c.categories) > L.spacing * L.label_step - 4.0;
    // Category labels, then the x label.
    const double labels_h = L.rotate ? longest(c.categories) * 0.71 + 14.0 : 18.0;
    L.bottom              = kPlotTop + kPlotHeight + labels_h + 22.0;
    std::vector<std::string> names;
    for (const ChartSeries & s : c.series) {
        names.push_back(s.name);
    }
    L.legend_x = kPlotLeft + L.plot_w + 24.0;
    L.width    = std::max(L.legend_x + 18.0 + longest(names) + 12.0, 20.0 + text_width(c.title) * 15.0 / 12.0);
    L.height   = std::max(L.bottom + 12.0, kPlotTop + kLegendRow * (double) c.series.size() + 8.0);
    return L;
}

std::string num(double v) {
    return fmt::format("{:.2f}", v);
}

double y_of(const Chart & c, double value) {
    return kPlotTop + kPlotHeight * (1.0 - std::clamp(value, 0.0, c.y_max) / c.y_max);
}

double category_x(const Layout & L, size_t i) {  // the centre of category i
    return kPlotLeft + L.spacing * ((double) i + 0.5);
}

std::string value_text(const Chart & c, size_t series, size_t category) {
    return xml_escape(fmt::format("{}, {}: {:.2f}{}", c.series[series].name, c.categories[category],
                                  c.series[series].values[category], c.value_suffix));
}

// Title, grid, tick labels, axes, axis labels and category labels.
std::string draw_frame(const Chart & c, const Layout & L) {
    const double bottom = kPlotTop + kPlotHeight, right = kPlotLeft + L.plot_w;
    std::string  s      = fmt::format("<text class=\"title\" x=\"{}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                                      num(kPlotLeft), xml_escape(c.title));
    for (int i = 0; i <= kYTicks; i++) {
        const double v = c.y_max * i / kYTicks, y = y_of(c, v);
        s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#dddddd\"/>\n", num(kPlotLeft), num(y),
                         num(right), num(y));
        s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", num(kPlotLeft - 6), num(y + 4),
                         xml_escape(fmt::format("{:g}{}", v, c.value_suffix)));
    }
    s += fmt::format("<path d=\"M{} {}V{}H{}\" fill=\"none\" stroke=\"#333333\"/>\n", num(kPlotLeft), num(kPlotTop),
                     num(bottom), num(right));
    s += fmt::format("<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>\n",
                     num(kPlotTop + kPlotHeight / 2), num(kPlotTop + kPlotHeight / 2), xml_escape(c.y_label));
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", num(kPlotLeft + L.plot_w / 2),
                     num(L.bottom - 4), xml_escape(c.x_label));
    for (size_t i = 0; i < c.categories.size(); i += L.label_step) {
        const double x = category_x(L, i), y = bottom + 16;
        if (L.rotate) {
            s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" transform=\"rotate(-45 {} {})\">{}</text>\n",
                             num(x), num(y), num(x), num(y), xml_escape(c.categories[i]));
        } else {
            s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", num(x), num(y),
                             xml_escape(c.categories[i]));
        }
    }
    return s;
}

std::string draw_bars(const Chart & c, const Layout & L) {
    std::string  s;
    const double group_w = kBarWidth * (double) c.series.size();
    for (size_t i = 0; i < c.categories.size(); i++) {
        for (size_t k = 0; k < c.series.size(); k++) {
            const double v = c.series[k].values[i];
            if (std::isnan(v)) {
                continue;
            }
            const double x = category_x(L, i) - group_w / 2 + kBarWidth * (double) k, y = y_of(c, v);
            s += fmt::format("<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\">"
                             "<title>{}</title></rect>\n",
                             num(x), num(y), num(kBarWidth - 1), num(kPlotTop + kPlotHeight - y), kColours[k % 10],
                             value_text(c, k, i));
        }
    }
    return s;
}

// One polyline per run of values without a NaN, and a dot (with its value) at each point.
std::string draw_lines(const Chart & c, const Layout & L) {
    std::string s;
    for (size_t k = 0; k < c.series.size(); k++) {
        const char * colour = kColours[k % 10];
        std::string  points;
        auto         flush = [&]() {
            if (!points.empty()) {
                s += fmt::format("<polyline class=\"line\" points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                                 points, colour);
            }
            points.clear();
        };
        for (size_t i = 0; i < c.categories.size(); i++) {
            const double v = c.series[k].values[i];
            if (std::isnan(v)) {
                flush();
                continue;
            }
            points += fmt::format("{}{},{}", points.empty() ? "" : " ", num(category_x(L, i)), num(y_of(c, v)));
        }
        flush();
        for (size_t i = 0; i < c.categories.size(); i++) {
            const double v = c.series[k].values[i];
            if (!std::isnan(v)) {
                s += fmt::format("<circle class=\"point\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>\n",
                                 num(category_x(L, i)), num(y_of(c, v)), colour, value_text(c, k, i));
            }
        }
    }
    return s;
}

std::string draw_legend(const Chart & c, const Layout & L) {
    std::string s;
    for (size_t k = 0; k < c.series.size(); k++) {
        const double y = kPlotTop + kLegendRow * (double) k;
        s += fmt::format("<rect class=\"swatch\" x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n",
                         num(L.legend_x), num(y), kColours[k % 10]);
        s += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>\n", num(L.legend_x + 18), num(y + 10),
                         xml_escape(c.series[k].name));
    }
    return s;
}

void check_chart(const Chart & c) {
    if (!(c.y_max > 0) || !std::isfinite(c.y_max)) {
        throw std::invalid_argument("chart '" + c.title + "': y_max must be positive");
    }
    for (const ChartSeries & s : c.series) {
        if (s.values.size() != c.categories.size()) {
            throw std::invalid_argument("chart '" + c.title + "': series '" + s.name + "' needs one value per category");
        }
    }
}

// XML 1.0's characters: tab, newline, carriage return, U+0020..U+D7FF, U+E000..U+FFFD, U+10000...
bool xml_char(char32_t cp) {
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
           cp >= 0x10000;
}

}  // namespace

std::string xml_escape(const std::string & text) {
    const std::string valid = utf8_lossy(text);
    std::string       out;
    for (size_t i = 0; i < valid.size();) {
        const size_t   start = i;
        const char32_t cp    = next_code_point(valid, i);
        switch (cp) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default:
                if (xml_char(cp)) {
                    out.append(valid, start, i - start);
                }
        }
    }
    return out;
}

std::string render_svg(const std::vector<Chart> & charts) {
    double      width = 0, height = 0;
    std::string body;
    for (const Chart & c : charts) {
        check_chart(c);
        const Layout L = layout_of(c);
        body += fmt::format("<g class=\"chart\" transform=\"translate(0 {})\">\n", num(height));
        body += draw_frame(c, L);
        body += c.style == ChartStyle::bars ? draw_bars(c, L) : draw_lines(c, L);
        body += draw_legend(c, L);
        body += "</g>\n";
        width = std::max(width, L.width);
        height += L.height;
    }
    width  = std::ceil(width);
    height = std::ceil(std::max(height, 1.0));
    return fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                       "font-family=\"sans-serif\" font-size=\"12\">\n"
                       "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n{2}</svg>\n",
                       num(width), num(height), body);
}

}  // namespace paft
