// A bound on the nesting of the JSON paft reads. nlohmann's parser builds any depth, but copying,
// comparing, dumping or destroying a value recurses once per level, so a line nested some ten
// thousand levels deep (a few kilobytes) overflows the stack wherever the value goes next. Text
// from a file is checked before it is parsed: 512 levels is far past any real file
// (tokenizer.json nests 5, a chat dataset 4).
#pragma once

#include <string>
#include <string_view>

namespace paft {

constexpr int kMaxJsonDepth = 512;

// The deepest nesting of arrays and objects in JSON text (brackets inside strings not counted),
// counting stops at kMaxJsonDepth + 1. Text that is not JSON gets some number; its parser says
// what is wrong with it.
int json_depth(std::string_view text);

// InputError "WHERE: JSON nested deeper than 512 levels (...)" when `text` is.
void check_json_depth(std::string_view text, const std::string & where);

}  // namespace paft
