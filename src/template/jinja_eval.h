// Renders a parsed template: statements, scopes (each iteration of a for loop and each macro call
// get their own, as in jinja2; if and set do not), loop variables, macros and the globals transformers
// provides (raise_exception, strftime_now) besides jinja2's (range, namespace, dict).
#pragma once

#include "template/jinja_parser.h"
#include "template/jinja_value.h"

#include <string>

namespace paft::jinja {

// What `{{ x }}` does with an undefined x: jinja2's default Undefined prints nothing, its
// StrictUndefined (lm-evaluation-harness's task templates) is an error naming the variable.
enum class UndefinedOutput { Empty, Error };

// Renders `body` with `variables` (a Dict of name -> value). Errors are InputErrors
// "ORIGIN:LINE: message"; raise_exception(msg) gives "ORIGIN: msg".
std::string render(const Body & body, const Dict & variables, const std::string & origin,
                   UndefinedOutput undefined = UndefinedOutput::Empty);

}  // namespace paft::jinja
