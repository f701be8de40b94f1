#include "io/json_snippet.h"

#include <fmt/format.h>

namespace paft {

std::string json_snippet(const nlohmann::json & value) {
    if (value.is_array()) {
        return fmt::format("a list of {} element(s)", value.size());
    }
    if (value.is_object()) {
        return fmt::format("an object with {} field(s)", value.size());
    }
    constexpr size_t kMaxChars = 80;
    std::string      text      = value.dump();
    if (text.size() > kMaxChars) {
        text = text.substr(0, kMaxChars) + "...";
    }
    return text;
}

}  // namespace paft
