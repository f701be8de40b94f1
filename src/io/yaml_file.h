// Reading a YAML file (recipes, merge configs) with errors that name FILE:LINE:COLUMN.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace paft {

// Parses `path`; InputError naming the file (and the position of a syntax error). `what` says
// what the file is for ("recipe", "merge config").
YAML::Node load_yaml_file(const std::string & path, const std::string & what);

}  // namespace paft
