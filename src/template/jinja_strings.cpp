#include "template/jinja_strings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace paft::jinja {

namespace {

// Case mapping of one code point for the scripts chat text commonly has: ASCII, Latin-1,
// Latin Extended-A, basic Greek and Cyrillic (full Unicode tables are out of scope). `title`
// gives the title case, which differs from upper case for ß.
uint32_t upper_code_point(uint32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c < 0x80) return c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 0x20;
    if (c == 0xFF) return 0x178;
    if (c == 0xB5) return 0x39C;
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c & ~1u;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
    if (c == 0x3C2) return 0x3A3;
    if ((c >= 0x3B1 && c <= 0x3C1) || (c >= 0x3C3 && c <= 0x3CB)) return c - 0x20;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 0x25;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 0x3F;
    if (c >= 0x430 && c <= 0x44F) return c - 0x20;
    if (c >= 0x450 && c <= 0x45F) return c - 0x50;
    return c;
}

uint32_t lower_code_point(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0x80) return c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
    if (c == 0x178) return 0xFF;
    if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1u;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB)) return c + 0x20;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 0x25;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 0x3F;
    if (c >= 0x410 && c <= 0x42F) return c + 0x20;
    if (c >= 0x400 && c <= 0x40F) return c + 0x50;
    return c;
}

std::string upper_cp(const std::string & cp, bool title = false) {
    const uint32_t c = first_code_point(cp);
    if (c == 0xDF) return title ? "Ss" : "SS";
    if (c == 0x149) return "\u02BCN";
    const uint32_t u = upper_code_point(c);
    return u == c ? cp : encode_utf8(u);
}

std::string lower_cp(const std::string & cp) {
    const uint32_t c = first_code_point(cp);
    if (c == 0x130) return "i\u0307";
    const uint32_t l = lower_code_point(c);
    return l == c ? cp : encode_utf8(l);
}

}  // namespace

// A letter with case (Python's "cased"), within the scripts mapped above.
bool is_cased(const std::string & cp) {
    const uint32_t c = first_code_point(cp);
    return upper_code_point(c) != c || lower_code_point(c) != c || c == 0xDF || c == 0x138 || c == 0x149 || c == 0x130;
}

std::string py_upper(const std::string & s) {
    std::string out;
    for (const std::string & cp : code_points(s)) out += upper_cp(cp);
    return out;
}

std::string py_lower(const std::string & s) {
    std::string out;
    for (const std::string & cp : code_points(s)) out += lower_cp(cp);
    return out;
}

bool is_alpha(const std::string & cp) {
    return cp.size() > 1 || (cp[0] >= 'a' && cp[0] <= 'z') || (cp[0] >= 'A' && cp[0] <= 'Z');
}

// Python's str.title(): a cased letter after an uncased character is title-cased, the others
// lower-cased.
std::string py_title(const std::string & s) {
    std::string out;
    bool        prev_cased = false;
    for (const std::string & cp : code_points(s)) {
        out += prev_cased ? lower_cp(cp) : upper_cp(cp, true);
        prev_cased = is_cased(cp);
    }
    return out;
}

std::string py_capitalize(const std::string & s) {
    if (s.empty()) return s;
    auto        cps = code_points(s);
    std::string out = upper_cp(cps[0], true);
    for (size_t k = 1; k < cps.size(); ++k) out += lower_cp(cps[k]);
    return out;
}

// jinja2's `title` filter: words start after spaces, '-', '(', '{', '[' and '<'.
std::string jinja_title(const std::string & s) {
    std::string out;
    bool        word_start = true;
    for (const std::string & cp : code_points(s)) {
        const bool sep = is_space(cp) || cp == "-" || cp == "(" || cp == "{" || cp == "[" || cp == "<";
        out += sep ? cp : word_start ? upper_cp(cp) : lower_cp(cp);
        word_start = sep;
    }
    return out;
}

// Python's strip/lstrip/rstrip: `chars` null strips whitespace.
std::string py_strip(const std::string & s, const Value * chars, bool left, bool right) {
    if (chars && !chars->is_none() && !chars->is_string()) throw RenderError("strip arg must be None or str");
    const bool                     whitespace = !chars || chars->is_none();
    const std::vector<std::string> set        = whitespace ? std::vector<std::string>{} : code_points(chars->str);
    auto strip_it = [&](const std::string & cp) {
        return whitespace ? is_space(cp) : std::find(set.begin(), set.end(), cp) != set.end();
    };
    auto   cps   = code_points(s);
    size_t begin = 0, end = cps.size();
    while (left && begin < end && strip_it(cps[begin])) ++begin;
    while (right && end > begin && strip_it(cps[end - 1])) --end;
    std::string out;
    for (size_t k = begin; k < end; ++k) out += cps[k];
    return out;
}

List py_split(const std::string & s, const Value * sep, int64_t maxsplit) {
    List out;
    if (!sep || sep->is_none()) {
        // Runs of whitespace separate; leading and trailing whitespace gives no empty items.
        auto        cps = code_points(s);
        size_t      k   = 0;
        while (k < cps.size()) {
            while (k < cps.size() && is_space(cps[k])) ++k;
            if (k == cps.size()) break;
            std::string word;
            if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
                // The rest, trailing whitespace included, as Python keeps it.
                for (; k < cps.size(); ++k) word += cps[k];
                out.push_back(Value::string(std::move(word)));
                break;
            }
            while (k < cps.size() && !is_space(cps[k])) word += cps[k++];
            out.push_back(Value::string(std::move(word)));
        }
        return out;
    }
    if (!sep->is_string()) throw RenderError("must be str or None, not " + type_name(*sep));
    if (sep->str.empty()) throw RenderError("empty separator");
    size_t start = 0;
    for (;;) {
        const size_t at = s.find(sep->str, start);
        if (at == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) break;
        out.push_back(Value::string(s.substr(start, at - start)));
        start = at + sep->str.size();
    }
    out.push_back(Value::string(s.substr(start)));
    return out;
}

std::string py_replace(const std::string & s, const std::string & old, const std::string & repl, int64_t count) {
    std::string out;
    if (old.empty()) {
        // Python inserts the replacement before every character and at the end.
        auto    cps = code_points(s);
        int64_t n   = 0;
        for (const std::string & cp : cps) {
            if (count < 0 || n < count) out += repl, ++n;
            out += cp;
        }
        if (count < 0 || n < count) out += repl;
        return out;
    }
    size_t  start = 0;
    int64_t n     = 0;
    for (;;) {
        const size_t at = s.find(old, start);
        if (at == std::string::npos || (count >= 0 && n >= count)) break;
        out.append(s, start, at - start);
        out += repl;
        start = at + old.size();
        ++n;
    }
    out.append(s, start, std::string::npos);
    return out;
}

int64_t code_point_index(const std::string & s, size_t byte_pos) {
    return static_cast<int64_t>(code_points(std::string_view(s).substr(0, byte_pos)).size());
}

// Python's int(str): optional sign and surrounding whitespace, underscores between digits.
bool parse_int(const std::string & text, int64_t & out) {
    const std::string s = py_strip(text, nullptr, true, true);
    std::string       digits;
    size_t            k = 0;
    if (k < s.size() && (s[k] == '+' || s[k] == '-')) digits += s[k++];
    if (k == s.size()) return false;
    for (; k < s.size(); ++k) {
        if (s[k] >= '0' && s[k] <= '9') digits += s[k];
        else if (!(s[k] == '_' && k + 1 < s.size() && s[k + 1] != '_' && digits.size() && digits.back() != '+' && digits.back() != '-')) return false;
    }
    try {
        out = std::stoll(digits);
    } catch (const std::exception &) {
        return false;
    }
    return true;
}

bool parse_float(const std::string & text, double & out) {
    std::string s = py_strip(text, nullptr, true, true);
    // Python allows single underscores between digits.
    for (size_t k = 0; k < s.size(); ++k) {
        if (s[k] != '_') continue;
        auto digit = [&](size_t at) { return at < s.size() && s[at] >= '0' && s[at] <= '9'; };
        if (k == 0 || !digit(k - 1) || !digit(k + 1)) return false;
        s.erase(k, 1);
    }
    if (s.empty()) return false;
    char * end = nullptr;
    out        = std::strtod(s.c_str(), &end);
    // strtod accepts hex floats, Python does not.
    return end == s.c_str() + s.size() && s.find_first_of("xX") == std::string::npos;
}

std::vector<std::string> split_lines(const std::string & s) {
    std::vector<std::string> lines;
    std::string              line;
    auto                     cps = code_points(s);
    for (size_t k = 0; k < cps.size(); ++k) {
        const std::string & cp = cps[k];
        const bool brk = cp == "\n" || cp == "\r" || cp == "\v" || cp == "\f" || cp == "\x1c" || cp == "\x1d" || cp == "\x1e" ||
                         cp == "\u0085" || cp == "\u2028" || cp == "\u2029";
        if (!brk) {
            line += cp;
            continue;
        }
        if (cp == "\r" && k + 1 < cps.size() && cps[k + 1] == "\n") ++k;
        lines.push_back(std::move(line));
        line.clear();
    }
    if (!line.empty()) lines.push_back(std::move(line));
    return lines;
}

std::string html_escape(const std::string & s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

namespace {

struct PercentSpec {
    std::string key;    // %(key)s
    std::string flags;  // of "-+ #0"
    int         width     = 0;
    int         precision = -1;
    char        type      = 's';
};

// Pads `text` to the spec's width with spaces (left-aligned with '-'), counting code points.
std::string pad(const std::string & text, const PercentSpec & spec) {
    const size_t len = code_points(text).size();
    if (static_cast<size_t>(spec.width) <= len) return text;
    const std::string fill(static_cast<size_t>(spec.width) - len, ' ');
    return spec.flags.find('-') != std::string::npos ? text + fill : fill + text;
}

std::string format_number(const Value & v, const PercentSpec & spec) {
    const char t = spec.type;
    const bool integral_type = t == 'd' || t == 'i' || t == 'u' || t == 'x' || t == 'X' || t == 'o';
    if (!v.is_number()) throw RenderError(std::string("%") + t + " format: a real number is required, not " + type_name(v));
    std::string fmt = "%";
    fmt += spec.flags;
    if (spec.width) fmt += std::to_string(spec.width);
    if (spec.precision >= 0) {
        fmt += '.';
        fmt += std::to_string(spec.precision);
    }
    // Sized by a first call: widths and precisions are bounded, but %f of 1e308 is long.
    auto print = [&](auto x) {
        std::string out(static_cast<size_t>(std::snprintf(nullptr, 0, fmt.c_str(), x)), '\0');
        std::snprintf(out.data(), out.size() + 1, fmt.c_str(), x);
        return out;
    };
    if (integral_type) {
        if (v.kind == Value::Kind::Float && !(std::fabs(v.f) < 9.2e18)) throw RenderError("cannot convert float " + float_repr(v.f) + " to integer");
        fmt += std::string("ll") + (t == 'i' || t == 'u' ? 'd' : t);
        return print(v.kind == Value::Kind::Float ? static_cast<long long>(v.f) : static_cast<long long>(v.as_int()));
    }
    fmt += t;
    return print(v.as_double());
}

std::string format_one(const Value & v, const PercentSpec & spec) {
    switch (spec.type) {
    case 's':
    case 'r':
    case 'a': {
        std::string text = spec.type == 's' ? to_str(v) : repr(v);
        if (spec.precision >= 0) {
            const auto cps = code_points(text);
            text.clear();
            for (size_t k = 0; k < cps.size() && k < static_cast<size_t>(spec.precision); ++k) text += cps[k];
        }
        return pad(text, spec);
    }
    case 'c':
        if (v.is_string() && code_points(v.str).size() == 1) return pad(v.str, spec);
        if (v.is_integral() && v.as_int() >= 0 && v.as_int() <= 0x10FFFF) return pad(encode_utf8(static_cast<uint32_t>(v.as_int())), spec);
        throw RenderError("%c requires an int or a unicode character");
    default: return format_number(v, spec);
    }
}

}  // namespace

std::string py_percent_format(const std::string & fmt, const Value & args) {
    const bool   tuple = args.kind == Value::Kind::Tuple;
    const List   empty;
    const List & items = tuple ? *args.list : empty;
    size_t       next  = 0;
    bool         used_single = false;
    std::string  out;
    for (size_t k = 0; k < fmt.size(); ++k) {
        if (fmt[k] != '%') {
            out += fmt[k];
            continue;
        }
        if (++k >= fmt.size()) throw RenderError("incomplete format");
        PercentSpec spec;
        if (fmt[k] == '(') {
            const size_t close = fmt.find(')', k);
            if (close == std::string::npos) throw RenderError("incomplete format key");
            spec.key = fmt.substr(k + 1, close - k - 1);
            k        = close + 1;
        }
        for (; k < fmt.size() && std::string_view("-+ #0").find(fmt[k]) != std::string_view::npos; ++k) spec.flags += fmt[k];
        for (; k < fmt.size() && fmt[k] >= '0' && fmt[k] <= '9'; ++k) spec.width = std::min(spec.width * 10 + (fmt[k] - '0'), 10000);
        if (k < fmt.size() && fmt[k] == '.') {
            spec.precision = 0;
            for (++k; k < fmt.size() && fmt[k] >= '0' && fmt[k] <= '9'; ++k) spec.precision = std::min(spec.precision * 10 + (fmt[k] - '0'), 400);
        }
        if (k >= fmt.size()) throw RenderError("incomplete format");
        spec.type = fmt[k];
        if (spec.type == '%') {
            out += '%';
            continue;
        }
        if (std::string_view("sradiufFeEgGxXoc").find(spec.type) == std::string_view::npos) {
            throw RenderError(std::string("unsupported format character '") + spec.type + "'");
        }
        const Value * v = nullptr;
        if (!spec.key.empty()) {
            if (!args.is_dict()) throw RenderError("format requires a mapping");
            v = args.dict->find(spec.key);
            if (!v) throw RenderError("KeyError: '" + spec.key + "'");
        } else if (tuple) {
            if (next >= items.size()) throw RenderError("not enough arguments for format string");
            v = &items[next++];
        } else {
            if (used_single) throw RenderError("not enough arguments for format string");
            used_single = true;
            v           = &args;
        }
        out += format_one(*v, spec);
    }
    if (tuple && next < items.size()) throw RenderError("not all arguments converted during string formatting");
    if (!tuple && !args.is_dict() && !used_single) throw RenderError("not all arguments converted during string formatting");
    return out;
}

}  // namespace paft::jinja
