// Values of paft's Jinja interpreter: the Python objects a chat template sees (None, bool, int,
// float, str, list, tuple, dict, jinja2's Undefined, namespace() and callables), with Python's
// printing (str and repr), equality, ordering and truthiness, and json.dumps for `tojson`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paft::jinja {

// An error while rendering; the evaluator adds the template's origin and line.
struct RenderError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Value;
struct Dict;
struct CallArgs;
using List     = std::vector<Value>;
using Function = std::function<Value(const CallArgs &)>;

struct Value {
    enum class Kind { Undefined, None, Bool, Int, Float, String, List, Tuple, Dict, Namespace, Function };

    Kind    kind = Kind::Undefined;
    int     depth = 0;  // nesting of lists and dicts, bounded so that no recursion over a value overflows
    bool    b    = false;
    int64_t i    = 0;
    double  f    = 0;
    // The text of a String; for an Undefined, why it is undefined (used when it is misused).
    std::string                 str;
    std::shared_ptr<const List> list;  // List and Tuple
    std::shared_ptr<Dict>       dict;  // Dict and Namespace (a namespace is changed in place)
    std::shared_ptr<const Function> fn;

    static Value undefined(std::string why);
    static Value none();
    static Value boolean(bool v);
    static Value integer(int64_t v);
    static Value number(double v);
    static Value string(std::string v);
    static Value make_list(List items);
    static Value make_tuple(List items);
    static Value make_dict(Dict d);
    static Value make_namespace(Dict d);
    static Value function(Function fn);

    bool is_undefined() const { return kind == Kind::Undefined; }
    bool is_none() const { return kind == Kind::None; }
    bool is_string() const { return kind == Kind::String; }
    bool is_sequence() const { return kind == Kind::List || kind == Kind::Tuple; }
    bool is_dict() const { return kind == Kind::Dict; }
    // int, float and bool (Python's bool is an int).
    bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
    bool is_integral() const { return kind == Kind::Int || kind == Kind::Bool; }
    int64_t as_int() const { return kind == Kind::Bool ? (b ? 1 : 0) : i; }
    double  as_double() const { return kind == Kind::Float ? f : static_cast<double>(as_int()); }
};

// Insertion-ordered, as Python's dicts; lookups are linear (chat messages have a few keys).
struct Dict {
    std::vector<std::pair<Value, Value>> items;

    const Value * find(const Value & key) const;
    const Value * find(std::string_view key) const;
    void set(const Value & key, Value value);
};

// Arguments of a call: positional, then keyword, in the order written.
struct CallArgs {
    std::vector<Value>                         positional;
    std::vector<std::pair<std::string, Value>> keyword;

    // The argument at `index` or named `name`, or nullptr when not given.
    const Value * get(size_t index, std::string_view name) const;
};

// Python's type name of a value in error messages ("str", "dict", ...).
std::string type_name(const Value & v);

bool truthy(const Value & v);
// Python's str(v); an Undefined prints as "".
std::string to_str(const Value & v);
// Python's repr(v).
std::string repr(const Value & v);
// Python's repr of a float ("1.0", "1e-05", "inf").
std::string float_repr(double v);
// Python's ==, with 1 == 1.0 == True.
bool equals(const Value & a, const Value & b);
// Python's <; RenderError for values Python cannot order.
bool less(const Value & a, const Value & b);
// json.dumps' options; indent < 0 is none (one line).
struct JsonOptions {
    int         indent       = -1;
    bool        ensure_ascii = false;
    bool        sort_keys    = false;
    std::string item_separator = ", ";
    std::string key_separator  = ": ";
};
std::string to_json(const Value & v, const JsonOptions & options);

// A JSON value as the Python object json.loads would give; RenderError when nested too deeply.
Value from_json(const nlohmann::ordered_json & j);

// The items of an iterable (a str's characters, a dict's keys); an Undefined is empty.
List iterate(const Value & v);

// The code point a UTF-8 string starts with, and a code point's UTF-8 bytes.
uint32_t    first_code_point(std::string_view s);
size_t      first_code_point_size(std::string_view s);  // in bytes
std::string encode_utf8(uint32_t cp);
// UTF-8 code points of a str, each as its own UTF-8 string.
std::vector<std::string> code_points(std::string_view s);
// Python's str.isspace() for the code point at the start of `s` of `len` bytes.
bool is_space(std::string_view cp);

}  // namespace paft::jinja
