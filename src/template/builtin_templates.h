// The chat templates paft ships, by name, as Jinja source.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace paft {

// The source of a built-in template, or nullptr for an unknown name.
const char * builtin_template_source(std::string_view name);
std::vector<std::string> builtin_template_names();

}  // namespace paft
