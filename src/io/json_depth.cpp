#include "io/json_depth.h"

#include "core/error.h"

#include <fmt/format.h>

namespace paft {

int json_depth(std::string_view text) {
    int  depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
            if (deepest > kMaxJsonDepth) {
                return deepest;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return deepest;
}

void check_json_depth(std::string_view text, const std::string & where) {
    if (json_depth(text) > kMaxJsonDepth) {
        throw InputError(fmt::format("{}: JSON nested deeper than {} levels (arrays and objects inside each other); "
                                     "paft reads at most that",
                                     where, kMaxJsonDepth));
    }
}

}  // namespace paft
