// "Did you mean ...?" for unknown names in recipes, configs and flags.
#pragma once

#include <string>
#include <vector>

namespace paft {

// The candidate closest to `name` when it is close enough to be a typo (or a fragment or an
// extension of it), else "".
std::string closest_name(const std::string & name, const std::vector<std::string> & candidates);

}  // namespace paft
