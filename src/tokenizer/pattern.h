// The {"String": s} or {"Regex": r} patterns of Replace and Split components.
#pragma once

#include "tokenizer/json_reader.h"
#include "tokenizer/regex.h"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paft::tok {

class Pattern {
public:
    explicit Pattern(std::shared_ptr<const Regex> regex) : regex_(std::move(regex)) {}

    void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>> & out) const { regex_->find_all(text, out); }
    std::string replace_all(std::string_view text, std::string_view content) const {
        return regex_->replace_all(text, content);
    }

private:
    std::shared_ptr<const Regex> regex_;
};

// config["pattern"]; InputError naming the field when missing, of another kind, or invalid.
Pattern parse_pattern(const json & config, const std::string & path, const JsonReader & reader);

}  // namespace paft::tok
