#include "io/yaml_file.h"

#include "core/error.h"

#include <fmt/format.h>

#include <filesystem>

namespace paft {

YAML::Node load_yaml_file(const std::string & path, const std::string & what) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw InputError(fmt::format("{}: cannot read the {} (not a file)", path, what));
    }
    try {
        return YAML::LoadFile(path);
    } catch (const YAML::ParserException & e) {
        throw InputError(fmt::format("{}:{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
    } catch (const YAML::Exception & e) {
        throw InputError(fmt::format("{}: cannot read the {}: {}", path, what, e.what()));
    }
}

}  // namespace paft
