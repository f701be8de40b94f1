#include "template/jinja_builtins.h"

#include "template/jinja_strings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace paft::jinja {

void undefined_error(const Value & v) { throw RenderError(v.str.empty() ? "value is undefined" : v.str); }

namespace {

[[noreturn]] void type_error(const std::string & what) { throw RenderError(what); }

void check_defined(const Value & v) {
    if (v.is_undefined()) undefined_error(v);
}

// ---- numbers ---------------------------------------------------------------------------

// Python's integers are unbounded; paft's are 64-bit and fail rather than wrap.
[[noreturn]] void overflow_error() { throw RenderError("integer overflow (paft's integers are 64-bit)"); }

int64_t checked(bool overflow, int64_t result) {
    if (overflow) overflow_error();
    return result;
}

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

// CPython's float remainder: the sign of the divisor, signed zeros included.
double float_mod(double a, double b) {
    double m = std::fmod(a, b);
    if (m == 0) return std::copysign(0.0, b);
    if ((m < 0) != (b < 0)) m += b;
    return m;
}

// CPython's float floor division (float_floor_div), signed zeros included.
double float_floor_div(double x, double y) {
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0 && ((y < 0) != (mod < 0))) div -= 1.0;
    if (div == 0) return std::copysign(0.0, x / y);
    double floored = std::floor(div);
    if (div - floored > 0.5) floored += 1.0;
    return floored;
}

// base ** exp for exp >= 0 by repeated squaring. Squaring overflows only when the result would.
Value int_pow(int64_t base, int64_t exp) {
    int64_t result = 1;
    while (exp > 0) {
        if ((exp & 1) && __builtin_mul_overflow(result, base, &result)) overflow_error();
        exp >>= 1;
        if (exp > 0 && __builtin_mul_overflow(base, base, &base)) overflow_error();
    }
    return Value::integer(result);
}

Value arithmetic(const std::string & op, const Value & a, const Value & b) {
    const bool ints = a.is_integral() && b.is_integral();
    if (op == "+" || op == "-" || op == "*") {
        if (ints) {
            int64_t r  = 0;
            bool    of = op == "+" ? __builtin_add_overflow(a.as_int(), b.as_int(), &r)
                         : op == "-" ? __builtin_sub_overflow(a.as_int(), b.as_int(), &r)
                                     : __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
            return Value::integer(checked(of, r));
        }
        const double x = a.as_double(), y = b.as_double();
        return Value::number(op == "+" ? x + y : op == "-" ? x - y : x * y);
    }
    if (op == "/") {
        if (b.as_double() == 0) throw RenderError("division by zero");
        return Value::number(a.as_double() / b.as_double());
    }
    if (op == "//" || op == "%") {
        if (b.as_double() == 0) throw RenderError(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
        if (ints) {
            const int64_t q = floor_div(a.as_int(), b.as_int());
            return Value::integer(op == "//" ? q : a.as_int() - q * b.as_int());
        }
        return Value::number(op == "%" ? float_mod(a.as_double(), b.as_double()) : float_floor_div(a.as_double(), b.as_double()));
    }
    // "**"
    if (ints && b.as_int() >= 0) return int_pow(a.as_int(), b.as_int());
    if (a.as_double() == 0 && b.as_double() < 0) throw RenderError("0.0 cannot be raised to a negative power");
    return Value::number(std::pow(a.as_double(), b.as_double()));
}

// RenderError unless `count` more bytes (a string) or items (a list) stay within the bounds.
void check_built(bool string, size_t have, size_t each, int64_t times) {
    const size_t limit = string ? kMaxBuiltBytes : kMaxBuiltItems;
    if (times > 0 && each > 0 && (have > limit || (uint64_t) times > (limit - have) / each)) {
        throw RenderError(string ? "a string longer than " + std::to_string(kMaxBuiltBytes >> 20) +
                                       " MiB: more than a template may build"
                                 : "a list of more than " + std::to_string(kMaxBuiltItems) +
                                       " items: more than a template may build");
    }
}

Value repeat(const Value & seq, int64_t times) {
    check_built(seq.is_string(), 0, seq.is_string() ? seq.str.size() : seq.list->size(), times);
    if (seq.is_string()) {
        std::string out;
        for (int64_t k = 0; k < times; ++k) out += seq.str;
        return Value::string(std::move(out));
    }
    List out;
    for (int64_t k = 0; k < times; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
    return seq.kind == Value::Kind::Tuple ? Value::make_tuple(std::move(out)) : Value::make_list(std::move(out));
}

bool contains(const Value & container, const Value & item) {
    switch (container.kind) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
        if (!item.is_string()) type_error("'in <string>' requires string as left operand, not " + type_name(item));
        return container.str.find(item.str) != std::string::npos;
    case Value::Kind::List:
    case Value::Kind::Tuple:
        for (const Value & v : *container.list) {
            if (equals(v, item)) return true;
        }
        return false;
    case Value::Kind::Dict: return container.dict->find(item) != nullptr;
    default: type_error("argument of type '" + type_name(container) + "' is not iterable");
    }
}

// ---- arguments and methods ---------------------------------------------------------------

const Value & arg(const CallArgs & args, size_t index, std::string_view name, const std::string & fn) {
    const Value * v = args.get(index, name);
    if (!v) type_error(fn + "() missing required argument '" + std::string(name) + "'");
    return *v;
}

int64_t int_arg(const CallArgs & args, size_t index, std::string_view name, int64_t def) {
    const Value * v = args.get(index, name);
    if (!v || v->is_none()) return def;
    if (!v->is_integral()) type_error("'" + type_name(*v) + "' object cannot be interpreted as an integer");
    return v->as_int();
}

bool bool_arg(const CallArgs & args, size_t index, std::string_view name, bool def) {
    const Value * v = args.get(index, name);
    return v ? truthy(*v) : def;
}

const std::string & str_arg(const CallArgs & args, size_t index, std::string_view name, const std::string & fn) {
    const Value & v = arg(args, index, name, fn);
    if (!v.is_string()) type_error(fn + "() argument must be str, not " + type_name(v));
    return v.str;
}

// startswith/endswith take a str or a tuple of them.
bool affix_match(const std::string & s, const Value & affix, bool start) {
    auto one = [&](const Value & a) {
        if (!a.is_string()) type_error("startswith/endswith argument must be str or a tuple of str, not " + type_name(a));
        if (a.str.size() > s.size()) return false;
        return start ? s.compare(0, a.str.size(), a.str) == 0 : s.compare(s.size() - a.str.size(), a.str.size(), a.str) == 0;
    };
    if (affix.kind == Value::Kind::Tuple) {
        for (const Value & a : *affix.list) {
            if (one(a)) return true;
        }
        return false;
    }
    return one(affix);
}

// str.format with {}, {0} and {name} fields, no format specs.
std::string py_format(const std::string & fmt, const CallArgs & args) {
    std::string out;
    size_t      auto_index = 0;
    for (size_t k = 0; k < fmt.size(); ++k) {
        const char c = fmt[k];
        if ((c == '{' || c == '}') && k + 1 < fmt.size() && fmt[k + 1] == c) {
            out += c;
            ++k;
            continue;
        }
        if (c == '}') type_error("Single '}' encountered in format string");
        if (c != '{') {
            out += c;
            continue;
        }
        const size_t end = fmt.find('}', k);
        if (end == std::string::npos) type_error("Single '{' encountered in format string");
        const std::string field = fmt.substr(k + 1, end - k - 1);
        if (field.find_first_of(":!.[") != std::string::npos) type_error("format specs are not supported: {" + field + "}");
        const Value * v = nullptr;
        if (field.empty()) {
            v = auto_index < args.positional.size() ? &args.positional[auto_index] : nullptr;
            ++auto_index;
        } else if (int64_t index = 0; std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
            const bool in_range = parse_int(field, index) && static_cast<uint64_t>(index) < args.positional.size();
            v = in_range ? &args.positional[static_cast<size_t>(index)] : nullptr;
        } else {
            v = args.get(SIZE_MAX, field);
        }
        if (!v) type_error("format: no argument for {" + field + "}");
        out += to_str(*v);
        k = end;
    }
    return out;
}

Value string_method(const std::string & s, const std::string & name, const CallArgs & args) {
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
        return Value::string(py_strip(s, args.get(0, "chars"), name != "rstrip", name != "lstrip"));
    }
    if (name == "split") return Value::make_list(py_split(s, args.get(0, "sep"), int_arg(args, 1, "maxsplit", -1)));
    if (name == "startswith" || name == "endswith") {
        return Value::boolean(affix_match(s, arg(args, 0, "prefix", name), name == "startswith"));
    }
    if (name == "upper") return Value::string(py_upper(s));
    if (name == "lower") return Value::string(py_lower(s));
    if (name == "title") return Value::string(py_title(s));
    if (name == "capitalize") return Value::string(py_capitalize(s));
    if (name == "replace") {
        return Value::string(py_replace(s, str_arg(args, 0, "old", name), str_arg(args, 1, "new", name), int_arg(args, 2, "count", -1)));
    }
    if (name == "find" || name == "rfind") {
        const std::string & sub = str_arg(args, 0, "sub", name);
        const size_t        at  = name == "find" ? s.find(sub) : s.rfind(sub);
        return Value::integer(at == std::string::npos ? -1 : code_point_index(s, at));
    }
    if (name == "count") {
        const std::string & sub = str_arg(args, 0, "sub", name);
        if (sub.empty()) return Value::integer(static_cast<int64_t>(code_points(s).size()) + 1);
        int64_t n = 0;
        for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
        return Value::integer(n);
    }
    if (name == "join") {
        std::string out;
        const List  items = iterate(arg(args, 0, "iterable", name));
        for (size_t k = 0; k < items.size(); ++k) {
            if (!items[k].is_string()) type_error("sequence item " + std::to_string(k) + ": expected str instance, " + type_name(items[k]) + " found");
            if (k) out += s;
            out += items[k].str;
        }
        return Value::string(std::move(out));
    }
    if (name == "format") return Value::string(py_format(s, args));
    // isdigit/isalpha/isspace over ASCII (and whitespace as Python defines it).
    auto cps = code_points(s);
    auto all = [&](auto pred) { return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), pred)); };
    if (name == "isspace") return all([](const std::string & cp) { return is_space(cp); });
    if (name == "isdigit") return all([](const std::string & cp) { return cp.size() == 1 && cp[0] >= '0' && cp[0] <= '9'; });
    if (name == "isalpha") return all([](const std::string & cp) { return is_alpha(cp); });
    type_error("'str' object has no attribute '" + name + "'");
}

const char * const kStringMethods[] = {"strip", "lstrip", "rstrip", "split",   "startswith", "endswith", "upper",
                                       "lower", "title",  "capitalize", "replace", "find", "rfind", "count",
                                       "join",  "format", "isspace", "isdigit", "isalpha"};

Value dict_method(const std::shared_ptr<Dict> & d, const std::string & name, const CallArgs & args) {
    if (name == "items") {
        List out;
        for (const auto & [k, v] : d->items) out.push_back(Value::make_tuple({k, v}));
        return Value::make_list(std::move(out));
    }
    if (name == "keys" || name == "values") {
        List out;
        for (const auto & [k, v] : d->items) out.push_back(name == "keys" ? k : v);
        return Value::make_list(std::move(out));
    }
    // get(key, default=None)
    const Value * found = d->find(arg(args, 0, "key", name));
    if (found) return *found;
    const Value * def = args.get(1, "default");
    return def ? *def : Value::none();
}

bool is_method_of(const char * const * names, size_t count, const std::string & name) {
    return std::find(names, names + count, name) != names + count;
}

// ---- filters ---------------------------------------------------------------------------

int64_t length(const Value & v) {
    switch (v.kind) {
    case Value::Kind::Undefined: return 0;
    case Value::Kind::String: return static_cast<int64_t>(code_points(v.str).size());
    case Value::Kind::List:
    case Value::Kind::Tuple: return static_cast<int64_t>(v.list->size());
    case Value::Kind::Dict:
    case Value::Kind::Namespace: return static_cast<int64_t>(v.dict->items.size());
    default: type_error("object of type '" + type_name(v) + "' has no len()");
    }
}

// jinja2's attribute getter: "a.b" and "a.0" walk into nested values.
Value attribute_path(const Value & item, const Value & attribute) {
    if (attribute.is_integral()) return get_item(item, attribute);
    Value       v    = item;
    std::string path = to_str(attribute);
    size_t      start = 0;
    for (;;) {
        const size_t      dot  = path.find('.', start);
        const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        int64_t    index   = 0;
        const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                             parse_int(part, index);
        v = numeric ? get_item(v, Value::integer(index)) : get_item(v, Value::string(part));
        if (dot == std::string::npos) return v;
        start = dot + 1;
    }
}

Value lower_if_string(const Value & v, bool case_sensitive) {
    return !case_sensitive && v.is_string() ? Value::string(py_lower(v.str)) : v;
}

// The test a select-like filter applies: args from `first` on are the test name and its args.
bool select_test(const Value & v, const CallArgs & args, size_t first) {
    if (args.positional.size() <= first) return truthy(v);
    const Value & test = args.positional[first];
    if (!test.is_string()) type_error("test name must be a string");
    CallArgs rest;
    rest.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(first) + 1, args.positional.end());
    rest.keyword = args.keyword;
    return apply_test(test.str, v, rest);
}

Value select_filter(const std::string & name, const Value & input, const CallArgs & args) {
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep    = name == "select" || name == "selectattr";
    List       out;
    for (const Value & item : iterate(input)) {
        const Value & subject = by_attr ? attribute_path(item, arg(args, 0, "attribute", name)) : item;
        if (select_test(by_attr ? Value(subject) : item, args, by_attr ? 1 : 0) == keep) out.push_back(item);
    }
    return Value::make_list(std::move(out));
}

Value map_filter(const Value & input, const CallArgs & args) {
    List          out;
    const Value * attribute = args.get(SIZE_MAX, "attribute");
    for (const Value & item : iterate(input)) {
        if (attribute) {
            Value v = attribute_path(item, *attribute);
            if (v.is_undefined()) {
                if (const Value * def = args.get(SIZE_MAX, "default")) v = *def;
            }
            out.push_back(std::move(v));
            continue;
        }
        const Value & filter = arg(args, 0, "filter", "map");
        if (!filter.is_string()) type_error("map filter name must be a string");
        CallArgs rest;
        rest.positional.assign(args.positional.begin() + 1, args.positional.end());
        rest.keyword = args.keyword;
        out.push_back(apply_filter(filter.str, item, rest));
    }
    return Value::make_list(std::move(out));
}

Value sort_filter(const Value & input, const CallArgs & args, bool unique) {
    const bool    reverse        = !unique && bool_arg(args, 0, "reverse", false);
    const bool    case_sensitive = bool_arg(args, unique ? 0 : 1, "case_sensitive", false);
    const Value * attribute      = args.get(unique ? 1 : 2, "attribute");
    List          items          = iterate(input);
    auto key = [&](const Value & item) {
        return lower_if_string(attribute && !attribute->is_none() ? attribute_path(item, *attribute) : item, case_sensitive);
    };
    if (unique) {
        List out, seen;
        for (const Value & item : items) {
            Value k = key(item);
            if (std::none_of(seen.begin(), seen.end(), [&](const Value & s) { return equals(s, k); })) {
                seen.push_back(k);
                out.push_back(item);
            }
        }
        return Value::make_list(std::move(out));
    }
    std::stable_sort(items.begin(), items.end(),
                     [&](const Value & a, const Value & b) { return reverse ? less(key(b), key(a)) : less(key(a), key(b)); });
    return Value::make_list(std::move(items));
}

Value round_filter(const Value & v, const CallArgs & args) {
    if (!v.is_number()) type_error("type " + type_name(v) + " doesn't define __round__ method");
    const int64_t precision = int_arg(args, 0, "precision", 0);
    const Value * method_v  = args.get(1, "method");
    const std::string method = method_v ? to_str(*method_v) : "common";
    if (method != "common" && method != "ceil" && method != "floor") {
        type_error("method must be common, ceil or floor");
    }
    if (method == "common") {
        if (v.is_integral()) return Value::integer(v.as_int());
        if (precision < 0) {
            const double scale = std::pow(10.0, static_cast<double>(-precision));
            return Value::number(std::nearbyint(v.f / scale) * scale);
        }
        // printf rounds the exact binary value half-to-even, as Python's round does.
        char buf[512];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::min<int64_t>(precision, 300)), v.f);
        return Value::number(std::strtod(buf, nullptr));
    }
    const double scale  = std::pow(10.0, static_cast<double>(precision));
    const double scaled = v.as_double() * scale;
    return Value::number((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

Value int_filter(const Value & v, const CallArgs & args) {
    const Value * def_arg = args.get(0, "default");
    const Value   def     = def_arg ? *def_arg : Value::integer(0);
    if (v.is_integral()) return Value::integer(v.as_int());
    if (v.kind == Value::Kind::Float) {
        if (!std::isfinite(v.f)) return def;
        return Value::integer(static_cast<int64_t>(v.f));
    }
    if (v.is_string()) {
        int64_t i = 0;
        if (parse_int(v.str, i)) return Value::integer(i);
        double f = 0;
        if (parse_float(v.str, f) && std::isfinite(f)) return Value::integer(static_cast<int64_t>(f));
    }
    return def;
}

Value float_filter(const Value & v, const CallArgs & args) {
    const Value * def_arg = args.get(0, "default");
    const Value   def     = def_arg ? *def_arg : Value::number(0.0);
    if (v.is_number()) return Value::number(v.as_double());
    double f = 0;
    if (v.is_string() && parse_float(v.str, f)) return Value::number(f);
    return def;
}

Value indent_filter(const Value & v, const CallArgs & args) {
    const Value * width       = args.get(0, "width");
    std::string   indentation = !width ? "    " : width->is_string() ? width->str : std::string(static_cast<size_t>(std::max<int64_t>(0, int_arg(args, 0, "width", 4))), ' ');
    const bool    first       = bool_arg(args, 1, "first", false);
    const bool    blank       = bool_arg(args, 2, "blank", false);
    auto          lines       = split_lines(to_str(v) + "\n");
    std::string   out;
    for (size_t k = 0; k < lines.size(); ++k) {
        if (k) {
            out += '\n';
            if (blank || !lines[k].empty()) out += indentation;
        }
        out += lines[k];
    }
    return Value::string(first ? indentation + out : out);
}

Value join_filter(const Value & v, const CallArgs & args) {
    const Value * sep       = args.get(0, "d");
    const Value * attribute = args.get(1, "attribute");
    std::string   out;
    const List    items = iterate(v);
    for (size_t k = 0; k < items.size(); ++k) {
        if (k && sep) out += to_str(*sep);
        out += to_str(attribute && !attribute->is_none() ? attribute_path(items[k], *attribute) : items[k]);
    }
    return Value::string(std::move(out));
}

Value reverse_filter(const Value & v) {
    if (v.is_string()) {
        auto        cps = code_points(v.str);
        std::string out;
        for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
        return Value::string(std::move(out));
    }
    List items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::make_list(std::move(items));
}

Value minmax_filter(const Value & v, const CallArgs & args, bool max) {
    const bool case_sensitive = bool_arg(args, 0, "case_sensitive", false);
    const List items          = iterate(v);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    size_t best = 0;
    for (size_t k = 1; k < items.size(); ++k) {
        const Value a = lower_if_string(items[k], case_sensitive), b = lower_if_string(items[best], case_sensitive);
        if (max ? less(b, a) : less(a, b)) best = k;
    }
    return items[best];
}

// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value tojson_filter(const Value & v, const CallArgs & args) {
    check_defined(v);
    JsonOptions opt;
    opt.ensure_ascii = bool_arg(args, 0, "ensure_ascii", false);
    opt.indent       = static_cast<int>(int_arg(args, 1, "indent", -1));
    opt.sort_keys    = bool_arg(args, 3, "sort_keys", false);
    if (opt.indent >= 0) opt.item_separator = ",";
    const Value * separators = args.get(2, "separators");
    if (separators && !separators->is_none()) {
        if (!separators->is_sequence() || separators->list->size() != 2 || !(*separators->list)[0].is_string() ||
            !(*separators->list)[1].is_string()) {
            type_error("separators must be a pair of strings");
        }
        opt.item_separator = (*separators->list)[0].str;
        opt.key_separator  = (*separators->list)[1].str;
    }
    return Value::string(to_json(v, opt));
}

const char * const kFilters[] = {"length", "count",   "trim",   "upper",   "lower",   "title",      "capitalize",
                                 "first",  "last",    "join",   "default", "d",       "tojson",     "string",
                                 "int",    "float",   "list",   "map",     "select",  "reject",     "selectattr",
                                 "rejectattr", "items", "replace", "round", "abs",    "unique",     "sort",
                                 "safe",   "indent",  "reverse", "sum",    "min",     "max",        "attr",
                                 "escape", "e",     "format"};

const char * const kTests[] = {"defined", "undefined", "none",    "string",  "mapping", "iterable", "sequence",
                               "number",  "integer",   "float",   "boolean", "true",    "false",    "odd",
                               "even",    "divisibleby", "eq",    "equalto", "==",      "ne",       "!=",
                               "lt",      "<",         "lessthan", "le",     "<=",      "gt",       ">",
                               "greaterthan", "ge",    ">=",      "in",      "sameas",  "callable", "lower",
                               "upper"};

}  // namespace

// ---- operators -------------------------------------------------------------------------

Value binary_op(const std::string & op, const Value & a, const Value & b) {
    if (op == "~") return Value::string(to_str(a) + to_str(b));
    if (op == "==") return Value::boolean(equals(a, b));
    if (op == "!=") return Value::boolean(!equals(a, b));
    if (op == "in") return Value::boolean(contains(b, a));
    if (op == "not in") return Value::boolean(!contains(b, a));
    check_defined(a);
    check_defined(b);
    if (op == "<") return Value::boolean(less(a, b));
    if (op == ">") return Value::boolean(less(b, a));
    if (op == "<=") return Value::boolean(!less(b, a));
    if (op == ">=") return Value::boolean(!less(a, b));
    if (a.is_number() && b.is_number()) return arithmetic(op, a, b);
    if (op == "%" && a.is_string()) return Value::string(py_percent_format(a.str, b));
    if (op == "+") {
        if (a.is_string() && b.is_string()) {
            check_built(true, a.str.size(), b.str.size(), 1);
            return Value::string(a.str + b.str);
        }
        if (a.is_sequence() && a.kind == b.kind) {
            check_built(false, a.list->size(), b.list->size(), 1);
            List out = *a.list;
            out.insert(out.end(), b.list->begin(), b.list->end());
            return a.kind == Value::Kind::Tuple ? Value::make_tuple(std::move(out)) : Value::make_list(std::move(out));
        }
    }
    if (op == "*") {
        if ((a.is_string() || a.is_sequence()) && b.is_integral()) return repeat(a, b.as_int());
        if ((b.is_string() || b.is_sequence()) && a.is_integral()) return repeat(b, a.as_int());
    }
    type_error("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

Value unary_op(const std::string & op, const Value & v) {
    check_defined(v);
    if (!v.is_number()) type_error("bad operand type for unary " + op + ": '" + type_name(v) + "'");
    if (op == "+") return v.kind == Value::Kind::Float ? v : Value::integer(v.as_int());
    if (v.kind == Value::Kind::Float) return Value::number(-v.f);
    return Value::integer(checked(v.as_int() == INT64_MIN, -v.as_int()));
}

// ---- attributes, items, slices ---------------------------------------------------------

Value get_attr(const Value & obj, const std::string & name) {
    check_defined(obj);
    if (obj.is_string() && is_method_of(kStringMethods, std::size(kStringMethods), name)) {
        const std::string s = obj.str;
        return Value::function([s, name](const CallArgs & args) { return string_method(s, name, args); });
    }
    if (obj.is_dict()) {
        if (name == "items" || name == "keys" || name == "values" || name == "get") {
            const std::shared_ptr<Dict> d = obj.dict;
            return Value::function([d, name](const CallArgs & args) { return dict_method(d, name, args); });
        }
        if (const Value * v = obj.dict->find(name)) return *v;
    }
    if (obj.kind == Value::Kind::Namespace) {
        if (const Value * v = obj.dict->find(name)) return *v;
    }
    static const char * const mutators[] = {"append", "extend", "insert", "pop",  "remove",  "clear",
                                            "update", "setdefault", "popitem", "sort", "reverse"};
    if ((obj.is_sequence() || obj.is_dict()) && is_method_of(mutators, std::size(mutators), name)) {
        type_error("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.");
    }
    return Value::undefined("'" + type_name(obj) + " object' has no attribute '" + name + "'");
}

Value get_item(const Value & obj, const Value & key) {
    check_defined(obj);
    if ((obj.is_sequence() || obj.is_string()) && key.is_integral()) {
        const bool    str = obj.is_string();
        const auto    cps = str ? code_points(obj.str) : std::vector<std::string>{};
        const int64_t n   = str ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(obj.list->size());
        int64_t       i   = key.as_int();
        if (i < 0) i += n;
        if (i >= 0 && i < n) return str ? Value::string(cps[static_cast<size_t>(i)]) : (*obj.list)[static_cast<size_t>(i)];
        return Value::undefined("'" + type_name(obj) + " object' has no element " + repr(key));
    }
    if (obj.is_dict() || obj.kind == Value::Kind::Namespace) {
        if (const Value * v = obj.dict->find(key)) return *v;
    }
    if (key.is_string()) return get_attr(obj, key.str);
    return Value::undefined("'" + type_name(obj) + " object' has no element " + repr(key));
}

Value get_slice(const Value & obj, std::optional<int64_t> start, std::optional<int64_t> stop, std::optional<int64_t> step) {
    check_defined(obj);
    if (!obj.is_sequence() && !obj.is_string()) return Value::undefined("'" + type_name(obj) + "' object is not subscriptable");
    const int64_t s = step.value_or(1);
    if (s == 0) type_error("slice step cannot be zero");
    const auto    cps = obj.is_string() ? code_points(obj.str) : std::vector<std::string>{};
    const int64_t n   = obj.is_string() ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(obj.list->size());
    // Python's PySlice_AdjustIndices.
    auto adjust = [&](std::optional<int64_t> v, int64_t def) {
        if (!v) return def;
        int64_t x = *v;
        if (x < 0) x += n;
        if (x < 0) x = s < 0 ? -1 : 0;
        if (x >= n) x = s < 0 ? n - 1 : n;
        return x;
    };
    const int64_t lo = adjust(start, s < 0 ? n - 1 : 0);
    const int64_t hi = adjust(stop, s < 0 ? -1 : n);
    std::string   text;
    List          items;
    for (int64_t k = lo; s > 0 ? k < hi : k > hi; k += s) {
        if (obj.is_string()) text += cps[static_cast<size_t>(k)];
        else items.push_back((*obj.list)[static_cast<size_t>(k)]);
    }
    if (obj.is_string()) return Value::string(std::move(text));
    return obj.kind == Value::Kind::Tuple ? Value::make_tuple(std::move(items)) : Value::make_list(std::move(items));
}

// ---- filters and tests -----------------------------------------------------------------

bool is_filter(const std::string & name) { return is_method_of(kFilters, std::size(kFilters), name); }
bool is_test(const std::string & name) { return is_method_of(kTests, std::size(kTests), name); }

Value apply_filter(const std::string & name, const Value & v, const CallArgs & args) {
    if (name == "length" || name == "count") return Value::integer(length(v));
    if (name == "trim") return Value::string(py_strip(to_str(v), args.get(0, "chars"), true, true));
    if (name == "upper") return Value::string(py_upper(to_str(v)));
    if (name == "lower") return Value::string(py_lower(to_str(v)));
    if (name == "title") return Value::string(jinja_title(to_str(v)));
    if (name == "capitalize") return Value::string(py_capitalize(to_str(v)));
    if (name == "first" || name == "last") {
        const List items = iterate(v);
        if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
        return name == "first" ? items.front() : items.back();
    }
    if (name == "join") return join_filter(v, args);
    if (name == "default" || name == "d") {
        const bool use_default = v.is_undefined() || (bool_arg(args, 1, "boolean", false) && !truthy(v));
        if (!use_default) return v;
        const Value * def = args.get(0, "default_value");
        return def ? *def : Value::string("");
    }
    if (name == "tojson") return tojson_filter(v, args);
    if (name == "string" || name == "safe") return Value::string(to_str(v));
    if (name == "escape" || name == "e") return Value::string(html_escape(to_str(v)));
    if (name == "format") {
        // jinja2: value % (kwargs or args).
        if (!args.positional.empty() && !args.keyword.empty()) type_error("can't handle positional and keyword arguments at the same time");
        Dict named;
        for (const auto & [k, val] : args.keyword) named.set(Value::string(k), val);
        return Value::string(py_percent_format(to_str(v), args.keyword.empty() ? Value::make_tuple(args.positional) : Value::make_dict(std::move(named))));
    }
    if (name == "int") return int_filter(v, args);
    if (name == "float") return float_filter(v, args);
    if (name == "list") return Value::make_list(iterate(v));
    if (name == "map") return map_filter(v, args);
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") return select_filter(name, v, args);
    if (name == "items") {
        if (v.is_undefined()) return Value::make_list({});
        if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
        return dict_method(v.dict, "items", args);
    }
    if (name == "replace") {
        return Value::string(py_replace(to_str(v), to_str(arg(args, 0, "old", name)), to_str(arg(args, 1, "new", name)),
                                        int_arg(args, 2, "count", -1)));
    }
    if (name == "round") return round_filter(v, args);
    if (name == "abs") {
        if (!v.is_number()) type_error("bad operand type for abs(): '" + type_name(v) + "'");
        if (v.kind == Value::Kind::Float) return Value::number(std::fabs(v.f));
        return Value::integer(checked(v.as_int() == INT64_MIN, std::abs(v.as_int())));
    }
    if (name == "unique") return sort_filter(v, args, true);
    if (name == "sort") return sort_filter(v, args, false);
    if (name == "indent") return indent_filter(v, args);
    if (name == "reverse") return reverse_filter(v);
    if (name == "sum") {
        const Value * attribute = args.get(0, "attribute");
        const Value * start     = args.get(1, "start");
        Value         total     = start ? *start : Value::integer(0);
        for (const Value & item : iterate(v)) {
            total = binary_op("+", total, attribute && !attribute->is_none() ? attribute_path(item, *attribute) : item);
        }
        return total;
    }
    if (name == "min" || name == "max") return minmax_filter(v, args, name == "max");
    if (name == "attr") {
        // Python's getattr: a dict's keys are not attributes, a namespace's are.
        const std::string attr = to_str(arg(args, 0, "name", name));
        const bool method = attr == "items" || attr == "keys" || attr == "values" || attr == "get";
        if (v.is_dict() && !method) return Value::undefined("'dict object' has no attribute '" + attr + "'");
        return get_attr(v, attr);
    }
    throw RenderError("No filter named '" + name + "'.");
}

bool apply_test(const std::string & name, const Value & v, const CallArgs & args) {
    using K = Value::Kind;
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "iterable") return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
    if (name == "sequence") return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind == K::Int;
    if (name == "float") return v.kind == K::Float;
    if (name == "boolean") return v.kind == K::Bool;
    if (name == "true") return v.kind == K::Bool && v.b;
    if (name == "false") return v.kind == K::Bool && !v.b;
    if (name == "callable") return v.kind == K::Function;
    if (name == "lower" || name == "upper") {
        const std::string s = to_str(v);
        const auto cps       = code_points(s);
        const bool has_cased = std::any_of(cps.begin(), cps.end(), [](const std::string & cp) { return is_cased(cp); });
        return has_cased && s == (name == "lower" ? py_lower(s) : py_upper(s));
    }
    if (name == "odd" || name == "even") {
        if (!v.is_integral()) type_error("unsupported operand type(s) for %: '" + type_name(v) + "' and 'int'");
        return (floor_div(v.as_int(), 2) * 2 != v.as_int()) == (name == "odd");
    }
    const Value & other = arg(args, 0, "other", name);
    if (name == "divisibleby") return truthy(binary_op("==", binary_op("%", v, other), Value::integer(0)));
    if (name == "eq" || name == "equalto" || name == "==") return equals(v, other);
    if (name == "ne" || name == "!=") return !equals(v, other);
    if (name == "lt" || name == "<" || name == "lessthan") return truthy(binary_op("<", v, other));
    if (name == "le" || name == "<=") return truthy(binary_op("<=", v, other));
    if (name == "gt" || name == ">" || name == "greaterthan") return truthy(binary_op(">", v, other));
    if (name == "ge" || name == ">=") return truthy(binary_op(">=", v, other));
    if (name == "in") return contains(other, v);
    if (name == "sameas") {
        // Python's `is`: identity for None and bools, which are singletons.
        if (v.kind != other.kind) return false;
        if (v.is_none() || v.kind == K::Undefined) return true;
        if (v.kind == K::Bool) return v.b == other.b;
        if (v.kind == K::Int) return v.i == other.i && v.i >= -5 && v.i <= 256;
        return (v.list && v.list == other.list) || (v.dict && v.dict == other.dict) || (v.fn && v.fn == other.fn);
    }
    throw RenderError("No test named '" + name + "'.");
}

}  // namespace paft::jinja
