// Splits Jinja source into text and tag tokens with jinja2's whitespace rules as transformers
// configures them: trim_blocks (a block or comment tag eats the newline after it), lstrip_blocks
// (whitespace before a block or comment tag on its line is dropped), `-` on a tag side
// strips all whitespace on that side, `+` turns the two options off for that side.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paft::jinja {

struct Token {
    enum class Type { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };
    Type        type = Type::End;
    std::string text;  // the text, a name, an operator, or a string literal's decoded value
    int64_t     int_value   = 0;
    double      float_value = 0;
    int         line        = 1;
};

// jinja2 Environment options that change how text around tags is kept. The defaults are
// transformers' chat-template environment; lm-evaluation-harness's task templates use
// {false, false, true}.
struct Whitespace {
    bool trim_blocks           = true;
    bool lstrip_blocks         = true;
    bool keep_trailing_newline = false;
};

// Throws InputError "ORIGIN:LINE: ..." on unterminated tags, comments and strings.
std::vector<Token> tokenize(std::string_view source, const std::string & origin, const Whitespace & ws = {});

}  // namespace paft::jinja
