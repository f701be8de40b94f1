#include "template/jinja_value.h"
#include "core/utf8.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace paft::jinja {

Value Value::undefined(std::string why) {
    Value v;
    v.str = std::move(why);
    return v;
}

Value Value::none() {
    Value v;
    v.kind = Kind::None;
    return v;
}

Value Value::boolean(bool x) {
    Value v;
    v.kind = Kind::Bool;
    v.b    = x;
    return v;
}

Value Value::integer(int64_t x) {
    Value v;
    v.kind = Kind::Int;
    v.i    = x;
    return v;
}

Value Value::number(double x) {
    Value v;
    v.kind = Kind::Float;
    v.f    = x;
    return v;
}

Value Value::string(std::string x) {
    Value v;
    v.kind = Kind::String;
    v.str  = std::move(x);
    return v;
}

namespace {

// Deeper values (built by a template in a loop) are an error; see Value::depth.
constexpr int kMaxValueDepth = 500;

int nested_depth(const Value & child, int depth) {
    if (child.depth + 1 > kMaxValueDepth) throw RenderError("value nested too deeply (more than " + std::to_string(kMaxValueDepth) + " levels)");
    return std::max(depth, child.depth + 1);
}

}  // namespace

Value Value::make_list(List items) {
    Value v;
    for (const Value & item : items) v.depth = nested_depth(item, v.depth);
    v.kind = Kind::List;
    v.list = std::make_shared<const List>(std::move(items));
    return v;
}

Value Value::make_tuple(List items) {
    Value v = make_list(std::move(items));
    v.kind  = Kind::Tuple;
    return v;
}

Value Value::make_dict(Dict d) {
    Value v;
    for (const auto & [key, item] : d.items) v.depth = nested_depth(item, nested_depth(key, v.depth));
    v.kind = Kind::Dict;
    v.dict = std::make_shared<Dict>(std::move(d));
    return v;
}

Value Value::make_namespace(Dict d) {
    Value v = make_dict(std::move(d));
    v.kind  = Kind::Namespace;
    return v;
}

Value Value::function(Function fn) {
    Value v;
    v.kind = Kind::Function;
    v.fn   = std::make_shared<const Function>(std::move(fn));
    return v;
}

const Value * Dict::find(const Value & key) const {
    for (const auto & [k, v] : items) {
        if (equals(k, key)) return &v;
    }
    return nullptr;
}

const Value * Dict::find(std::string_view key) const {
    for (const auto & [k, v] : items) {
        if (k.is_string() && k.str == key) return &v;
    }
    return nullptr;
}

void Dict::set(const Value & key, Value value) {
    for (auto & [k, v] : items) {
        if (equals(k, key)) {
            v = std::move(value);
            return;
        }
    }
    items.emplace_back(key, std::move(value));
}

const Value * CallArgs::get(size_t index, std::string_view name) const {
    if (index < positional.size()) return &positional[index];
    for (const auto & [k, v] : keyword) {
        if (k == name) return &v;
    }
    return nullptr;
}

std::string type_name(const Value & v) {
    switch (v.kind) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::None: return "NoneType";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return "list";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Namespace: return "Namespace";
    case Value::Kind::Function: return "function";
    }
    return "object";
}

bool truthy(const Value & v) {
    switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return false;
    case Value::Kind::Bool: return v.b;
    case Value::Kind::Int: return v.i != 0;
    case Value::Kind::Float: return v.f != 0;
    case Value::Kind::String: return !v.str.empty();
    case Value::Kind::List:
    case Value::Kind::Tuple: return !v.list->empty();
    case Value::Kind::Dict: return !v.dict->items.empty();
    case Value::Kind::Namespace:
    case Value::Kind::Function: return true;
    }
    return true;
}

std::string float_repr(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
    // The shortest digits that read back as v, then laid out as Python's repr does: positional
    // for decimal exponents -4..15, scientific otherwise.
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    const bool  negative = sci[0] == '-';
    if (negative) sci.erase(0, 1);
    const size_t e_pos    = sci.find('e');
    const int    exponent = std::stoi(sci.substr(e_pos + 1));
    std::string  digits   = sci.substr(0, e_pos);
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    std::string out;
    if (exponent < -4 || exponent >= 16) {
        out = digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char exp_buf[16];
        std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
        out += exp_buf;
    } else if (exponent < 0) {
        out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else {
        const size_t int_len = static_cast<size_t>(exponent) + 1;
        if (digits.size() <= int_len) {
            out = digits + std::string(int_len - digits.size(), '0') + ".0";
        } else {
            out = digits.substr(0, int_len) + "." + digits.substr(int_len);
        }
    }
    return negative ? "-" + out : out;
}

namespace {

// Decodes the code point at s[pos] (advancing pos); invalid bytes decode as themselves.
uint32_t decode_utf8(std::string_view s, size_t & pos) {
    const auto c = static_cast<unsigned char>(s[pos]);
    int        len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (pos + len > s.size()) len = 1;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
    pos += len;
    return cp;
}

// Code points Python's str.isprintable() rejects (besides controls): the separators and the
// format characters that occur in text. Full Unicode tables are out of scope.
bool unprintable(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return true;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F)) return true;
    if ((cp >= 0x205F && cp <= 0x2064) || cp == 0x3000 || cp == 0xFEFF) return true;
    return false;
}

std::string repr_string(const std::string & s) {
    const bool has_single = s.find('\'') != std::string::npos;
    const bool has_double = s.find('"') != std::string::npos;
    const char quote      = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    size_t      pos = 0;
    while (pos < s.size()) {
        const size_t start = pos;
        const uint32_t cp  = decode_utf8(s, pos);
        char buf[16];
        if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
            out += '\\';
            out += static_cast<char>(cp);
        } else if (cp == '\n') {
            out += "\\n";
        } else if (cp == '\r') {
            out += "\\r";
        } else if (cp == '\t') {
            out += "\\t";
        } else if (unprintable(cp)) {
            std::snprintf(buf, sizeof buf, cp < 0x100 ? "\\x%02x" : "\\u%04x", cp);
            out += buf;
        } else {
            out.append(s, start, pos - start);
        }
    }
    out += quote;
    return out;
}

std::string repr_at(const Value & v, int depth);

std::string repr_items(const List & items, const char * open, const char * close, bool tuple, int depth) {
    std::string out = open;
    for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += ", ";
        out += repr_at(items[k], depth + 1);
    }
    if (tuple && items.size() == 1) out += ",";
    return out + close;
}

void json_string(const std::string & s, bool ensure_ascii, std::string & out) {
    out += '"';
    size_t pos = 0;
    while (pos < s.size()) {
        const size_t   start = pos;
        const uint32_t cp    = decode_utf8(s, pos);
        char           buf[16];
        switch (cp) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (cp < 0x20 || (ensure_ascii && cp > 0x7F && cp < 0x10000)) {
                std::snprintf(buf, sizeof buf, "\\u%04x", cp);
                out += buf;
            } else if (ensure_ascii && cp >= 0x10000) {
                // A surrogate pair, as json.dumps writes characters beyond the BMP.
                const uint32_t v = cp - 0x10000;
                std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                out += buf;
            } else {
                out.append(s, start, pos - start);
            }
        }
    }
    out += '"';
}

// Starts a new line at `level` when indenting, after the item separator unless `first`.
void json_break(const JsonOptions & opt, int level, bool first, std::string & out) {
    if (!first) out += opt.item_separator;
    if (opt.indent >= 0) {
        out += '\n';
        out.append(static_cast<size_t>(opt.indent * level), ' ');
    }
}

void json_close(const JsonOptions & opt, int level, char bracket, std::string & out) {
    if (opt.indent >= 0) {
        out += '\n';
        out.append(static_cast<size_t>(opt.indent * level), ' ');
    }
    out += bracket;
}

void json_dump(const Value & v, const JsonOptions & opt, int level, std::string & out) {
    if (level > kMaxValueDepth) throw RenderError("value nested too deeply for tojson");
    switch (v.kind) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.b ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.i); return;
    case Value::Kind::Float:
        if (std::isnan(v.f)) out += "NaN";
        else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
        else out += float_repr(v.f);
        return;
    case Value::Kind::String: json_string(v.str, opt.ensure_ascii, out); return;
    case Value::Kind::List:
    case Value::Kind::Tuple:
        if (v.list->empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (size_t k = 0; k < v.list->size(); ++k) {
            json_break(opt, level + 1, k == 0, out);
            json_dump((*v.list)[k], opt, level + 1, out);
        }
        json_close(opt, level, ']', out);
        return;
    case Value::Kind::Dict: {
        if (v.dict->items.empty()) {
            out += "{}";
            return;
        }
        // json.dumps turns int, float, bool and None keys into strings.
        std::vector<std::pair<std::string, const Value *>> entries;
        for (const auto & [k, item] : v.dict->items) {
            if (k.is_string()) entries.emplace_back(k.str, &item);
            else if (k.is_number() || k.is_none()) entries.emplace_back(to_json(k, JsonOptions{}), &item);
            else throw RenderError("keys must be str, int, float, bool or None, not " + type_name(k));
        }
        if (opt.sort_keys) {
            std::stable_sort(entries.begin(), entries.end(), [](const auto & a, const auto & b) { return a.first < b.first; });
        }
        out += '{';
        for (size_t k = 0; k < entries.size(); ++k) {
            json_break(opt, level + 1, k == 0, out);
            json_string(entries[k].first, opt.ensure_ascii, out);
            out += opt.key_separator;
            json_dump(*entries[k].second, opt, level + 1, out);
        }
        json_close(opt, level, '}', out);
        return;
    }
    default: throw RenderError("Object of type " + type_name(v) + " is not JSON serializable");
    }
}

}  // namespace

std::string to_str(const Value & v) {
    switch (v.kind) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::String: return v.str;
    default: return repr(v);
    }
}

std::string repr(const Value & v) { return repr_at(v, 0); }

namespace {

std::string repr_at(const Value & v, int depth) {
    // Only a namespace holding itself (a cycle) can go deeper than values are allowed to nest.
    if (depth > kMaxValueDepth) throw RenderError("value nested too deeply to print");
    switch (v.kind) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.b ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.i);
    case Value::Kind::Float: return float_repr(v.f);
    case Value::Kind::String: return repr_string(v.str);
    case Value::Kind::List: return repr_items(*v.list, "[", "]", false, depth);
    case Value::Kind::Tuple: return repr_items(*v.list, "(", ")", true, depth);
    case Value::Kind::Dict:
    case Value::Kind::Namespace: {
        std::string out = v.kind == Value::Kind::Namespace ? "<Namespace {" : "{";
        for (size_t k = 0; k < v.dict->items.size(); ++k) {
            if (k) out += ", ";
            out += repr_at(v.dict->items[k].first, depth + 1) + ": " + repr_at(v.dict->items[k].second, depth + 1);
        }
        return out + (v.kind == Value::Kind::Namespace ? "}>" : "}");
    }
    case Value::Kind::Function: return "<function>";
    }
    return "";
}

}  // namespace

bool equals(const Value & a, const Value & b) {
    if (a.is_number() && b.is_number()) {
        if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) return a.as_double() == b.as_double();
        return a.as_int() == b.as_int();
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.str == b.str;
    case Value::Kind::List:
    case Value::Kind::Tuple:
        if (a.list->size() != b.list->size()) return false;
        for (size_t k = 0; k < a.list->size(); ++k) {
            if (!equals((*a.list)[k], (*b.list)[k])) return false;
        }
        return true;
    case Value::Kind::Dict:
        if (a.dict->items.size() != b.dict->items.size()) return false;
        for (const auto & [k, item] : a.dict->items) {
            const Value * other = b.dict->find(k);
            if (!other || !equals(item, *other)) return false;
        }
        return true;
    default: return a.dict == b.dict && a.fn == b.fn;
    }
}

bool less(const Value & a, const Value & b) {
    if (a.is_number() && b.is_number()) {
        if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) return a.as_double() < b.as_double();
        return a.as_int() < b.as_int();
    }
    if (a.is_string() && b.is_string()) return a.str < b.str;  // UTF-8 byte order is code point order
    if (a.kind == b.kind && a.is_sequence()) {
        const List & x = *a.list;
        const List & y = *b.list;
        for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
            if (!equals(x[k], y[k])) return less(x[k], y[k]);
        }
        return x.size() < y.size();
    }
    throw RenderError("'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

std::string to_json(const Value & v, const JsonOptions & options) {
    std::string out;
    json_dump(v, options, 0, out);
    return out;
}

namespace {

Value from_json_at(const nlohmann::ordered_json & j, int depth) {
    if (depth > 256) throw RenderError("input JSON nested too deeply");
    switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
        const auto u = j.get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) return Value::number(static_cast<double>(u));
        return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
        List items;
        for (const auto & item : j) items.push_back(from_json_at(item, depth + 1));
        return Value::make_list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
        Dict d;
        for (const auto & [k, item] : j.items()) d.items.emplace_back(Value::string(k), from_json_at(item, depth + 1));
        return Value::make_dict(std::move(d));
    }
    default: throw RenderError("unsupported JSON value");
    }
}

}  // namespace

Value from_json(const nlohmann::ordered_json & j) { return from_json_at(j, 0); }

List iterate(const Value & v) {
    switch (v.kind) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::String: {
        List out;
        for (auto & cp : code_points(v.str)) out.push_back(Value::string(std::move(cp)));
        return out;
    }
    case Value::Kind::List:
    case Value::Kind::Tuple: return *v.list;
    case Value::Kind::Dict: {
        List out;
        for (const auto & item : v.dict->items) out.push_back(item.first);
        return out;
    }
    default: throw RenderError("'" + type_name(v) + "' object is not iterable");
    }
}

uint32_t first_code_point(std::string_view s) {
    size_t pos = 0;
    return s.empty() ? 0 : decode_utf8(s, pos);
}

size_t first_code_point_size(std::string_view s) {
    size_t pos = 0;
    if (!s.empty()) decode_utf8(s, pos);
    return pos;
}

std::string encode_utf8(uint32_t cp) {
    std::string out;
    append_utf8(out, cp);
    return out;
}

std::vector<std::string> code_points(std::string_view s) {
    std::vector<std::string> out;
    size_t                   pos = 0;
    while (pos < s.size()) {
        const size_t start = pos;
        decode_utf8(s, pos);
        out.emplace_back(s.substr(start, pos - start));
    }
    return out;
}

bool is_space(std::string_view cp) {
    const uint32_t c = first_code_point(cp);
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace paft::jinja
