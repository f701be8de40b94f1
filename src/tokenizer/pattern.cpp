#include "tokenizer/pattern.h"

#include "io/json_snippet.h"

namespace paft::tok {

Pattern parse_pattern(const json & config, const std::string & path, const JsonReader & reader) {
    const std::string where   = path + ".pattern";
    const json &      pattern = reader.require(config, path, "pattern");
    if (auto literal = reader.opt_string(pattern, where, "String")) {
        return Pattern(Regex::literal(*literal));
    }
    if (auto source = reader.opt_string(pattern, where, "Regex")) {
        std::string error;
        auto        regex = Regex::compile(*source, error);
        if (!regex) {
            reader.fail(where + ".Regex", "is not a valid regular expression: " + error);
        }
        return Pattern(std::move(regex));
    }
    reader.fail(where, "must be {\"String\": ...} or {\"Regex\": ...}, got " + json_snippet(pattern));
}

}  // namespace paft::tok
