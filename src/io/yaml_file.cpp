#include "io/yaml_file.h"

#include "core/error.h"

#include <fmt/format.h>

#include <filesystem>
#include <vector>

namespace paft {

namespace {

// A YAML alias is a reference, so `a: &a [x, x]`, `b: &b [*a, *a]`, ... doubles the tree with
// each line: 30 lines make a billion nodes for any reader that walks it (the "billion laughs").
// We walk the tree as our readers will, aliases expanded, and refuse one of more than
// kMaxYamlNodes nodes; a walk with our own stack, as the expanded depth is not bounded by the
// text's nesting (yaml-cpp bounds that: DeepRecursion past 2000 levels). The walk also refuses
// keys that are not plain scalars, which every reader would otherwise have to.
constexpr size_t kMaxYamlNodes = 1'000'000;

void check_expanded_size(const YAML::Node & root, const std::string & path) {
    std::vector<YAML::Node> stack{root};
    size_t                  visited = 0;
    while (!stack.empty()) {
        const YAML::Node node = stack.back();
        stack.pop_back();
        if (++visited > kMaxYamlNodes) {
            throw InputError(fmt::format("{}: more than {} values once its aliases (*name) are expanded; "
                                         "a recipe needs far fewer",
                                         path, kMaxYamlNodes));
        }
        if (node.IsSequence()) {
            for (const YAML::Node & item : node) {
                stack.push_back(item);
            }
        } else if (node.IsMap()) {
            for (const auto & item : node) {
                // Our readers take keys as names: a complex key ("? [a, b]: 1") is no name.
                if (!item.first.IsScalar()) {
                    throw InputError(fmt::format("{}:{}: a key must be a plain name, not a list or mapping", path,
                                                 item.first.Mark().line + 1));
                }
                stack.push_back(item.second);
            }
        }
    }
}

}  // namespace

YAML::Node load_yaml_file(const std::string & path, const std::string & what) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw InputError(fmt::format("{}: cannot read the {} (not a file)", path, what));
    }
    try {
        YAML::Node root = YAML::LoadFile(path);
        check_expanded_size(root, path);
        return root;
    } catch (const YAML::ParserException & e) {
        throw InputError(fmt::format("{}:{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
    } catch (const YAML::Exception & e) {
        throw InputError(fmt::format("{}: cannot read the {}: {}", path, what, e.what()));
    }
}

}  // namespace paft
