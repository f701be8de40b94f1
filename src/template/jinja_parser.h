// The syntax tree of a Jinja template and the parser that builds it from tokens, following
// jinja2's grammar and operator precedence.
#pragma once

#include "template/jinja_lexer.h"
#include "template/jinja_value.h"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paft::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
    enum class Kind {
        Literal,     // literal
        Name,        // name
        List,        // children: items
        Tuple,       // children: items
        Dict,        // children: key, value, key, value, ...
        Attr,        // children[0].name
        Item,        // children[0][children[1]]
        Slice,       // children[0][children[1]:children[2]:children[3]], each bound may be null
        Call,        // children[0](children[1..], kwargs)
        Filter,      // children[0] | name(children[1..], kwargs); children[0] null in a filter block
        Test,        // children[0] is [not] name(children[1..], kwargs)
        Unary,       // name ("-", "+") children[0]
        Binary,      // children[0] name children[1]: arithmetic and ~
        Compare,     // children[0] ops[0] children[1] ops[1] ...: chained as in Python
        And,
        Or,
        Not,
        Cond,        // children[1] if children[0] else children[2] (null: undefined)
    };
    Kind                                         kind = Kind::Literal;
    int                                          line = 1;
    Value                                        literal;
    std::string                                  name;
    bool                                         negate = false;  // `is not`, `not in`
    std::vector<ExprPtr>                         children;
    std::vector<std::string>                     ops;  // Compare's operators
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body    = std::vector<NodePtr>;

struct Node {
    enum class Kind {
        Text,         // text
        Output,       // {{ expr }}
        If,           // if expr: body, else: else_body (an elif is a nested If)
        For,          // for targets in expr [if cond]: body, else: else_body
        Set,          // set targets = expr, or set targets[0].attr = expr
        SetBlock,     // set targets[0]: body
        Macro,        // macro text(params): body
        CallBlock,    // call expr: body (the macro's `caller()`)
        FilterBlock,  // filter expr: body
        Break,
        Continue,
        With,         // with params: body, in a scope of its own
        Passthrough,  // transformers' {% generation %}: renders its body
    };
    Kind                                         kind = Kind::Text;
    int                                          line = 1;
    std::string                                  text;
    std::vector<std::string>                     targets;
    std::string                                  attr;
    ExprPtr                                      expr;
    ExprPtr                                      cond;
    Body                                         body;
    Body                                         else_body;
    std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters and defaults; with's names
};

// Parses a whole template. InputError "ORIGIN:LINE: template syntax error: ..." on bad syntax,
// including nesting deeper than the parser allows.
Body parse_template(std::string_view source, const std::string & origin, const Whitespace & ws = {});

}  // namespace paft::jinja
