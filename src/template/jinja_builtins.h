// What a template can apply to values: operators, attribute and item access (including the
// Python str and dict methods templates call), slicing, jinja2's filters and tests. Misuse is a
// RenderError with jinja2's or Python's wording.
#pragma once

#include "template/jinja_value.h"

#include <optional>
#include <string>

namespace paft::jinja {

// The most a template may build: a string of this many bytes, or a list of this many items
// (`'x' * 10**10` is refused at once instead of running until memory runs out). A chat prompt is
// some kilobytes; these are far past it.
constexpr size_t kMaxBuiltBytes = (size_t) 64 << 20;
constexpr size_t kMaxBuiltItems = (size_t) 1 << 22;

// Binary operators: + - * / // % ** ~ == != < <= > >= in, "not in".
Value binary_op(const std::string & op, const Value & a, const Value & b);
// Unary minus and plus.
Value unary_op(const std::string & op, const Value & v);

// `obj.name`: a method bound to obj when one exists, else a dict key or namespace attribute;
// otherwise an Undefined (an Undefined `obj` is an error, as in jinja2).
Value get_attr(const Value & obj, const std::string & name);
// `obj[key]`: an item; falls back to get_attr for a str key, Undefined when missing.
Value get_item(const Value & obj, const Value & key);
// `obj[start:stop:step]` on a list, tuple or str (code points), as Python slices.
Value get_slice(const Value & obj, std::optional<int64_t> start, std::optional<int64_t> stop, std::optional<int64_t> step);

bool  is_filter(const std::string & name);
bool  is_test(const std::string & name);
Value apply_filter(const std::string & name, const Value & input, const CallArgs & args);
bool  apply_test(const std::string & name, const Value & v, const CallArgs & args);

// jinja2's UndefinedError for using an Undefined where a value is needed.
[[noreturn]] void undefined_error(const Value & v);

}  // namespace paft::jinja
