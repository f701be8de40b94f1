// Python's str operations as chat templates use them (case mapping, strip, split, replace,
// int()/float() parsing, splitlines) over UTF-8 text, counted in code points as Python does.
#pragma once

#include "template/jinja_value.h"

#include <cstdint>
#include <string>
#include <vector>

namespace paft::jinja {

// Case mapping covers ASCII, Latin-1, Latin Extended-A, basic Greek and Cyrillic; other scripts
// are left as they are.
std::string py_upper(const std::string & s);
std::string py_lower(const std::string & s);
std::string py_title(const std::string & s);       // str.title()
std::string py_capitalize(const std::string & s);  // str.capitalize()
// jinja2's `title` filter: words start after whitespace, '-', '(', '{', '[' and '<'.
std::string jinja_title(const std::string & s);
// Whether a code point (as UTF-8) has case, and whether it is a letter (non-ASCII counts as one).
bool is_cased(const std::string & cp);
bool is_alpha(const std::string & cp);

// strip/lstrip/rstrip: `chars` null or None strips whitespace; RenderError for other non-str.
std::string py_strip(const std::string & s, const Value * chars, bool left, bool right);
// str.split(sep, maxsplit): `sep` null or None splits on runs of whitespace.
List py_split(const std::string & s, const Value * sep, int64_t maxsplit);
// str.replace(old, new, count); count < 0 replaces all.
std::string py_replace(const std::string & s, const std::string & old, const std::string & repl, int64_t count);
// The code point index of a byte offset.
int64_t code_point_index(const std::string & s, size_t byte_pos);

// int(str) and float(str): false when Python would raise ValueError.
bool parse_int(const std::string & text, int64_t & out);
bool parse_float(const std::string & text, double & out);
// str.splitlines(): every Unicode line boundary.
std::vector<std::string> split_lines(const std::string & s);
// Python's printf-style `fmt % args`: `args` a tuple (one value per conversion), a dict (for
// %(name)s) or a single value. Conversions s r a d i u f F e E g G x X o c %, with flags, width
// and precision.
std::string py_percent_format(const std::string & fmt, const Value & args);
// markupsafe's escape: & < > " ' as HTML entities.
std::string html_escape(const std::string & s);

}  // namespace paft::jinja
