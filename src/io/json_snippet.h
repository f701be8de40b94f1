// A JSON value for an error message. Scalars are shown (cut at 80 characters); arrays and objects
// only by kind and size: nlohmann's dump() recurses, so a hostile, deeply nested value could
// otherwise overflow the stack while the error is being reported.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace paft {

std::string json_snippet(const nlohmann::json & value);

}  // namespace paft
