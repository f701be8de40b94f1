#include "tokenizer/post_processor.h"

#include "io/json_snippet.h"

namespace paft::tok {
namespace {

// "single": a list of {"SpecialToken": {"id": name}} and one {"Sequence": {"id": "A"}}; the ids of
// each name come from "special_tokens".
void parse_template(const json & config, const std::string & path, const JsonReader & reader, SpecialTemplate & out) {
    const json & single = reader.require(config, path, "single");
    if (!single.is_array()) {
        reader.fail(path + ".single", "must be a list, got " + json_snippet(single));
    }
    const json & specials = reader.require(config, path, "special_tokens");
    SpecialTemplate added;
    bool            seen_sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
        const std::string where = path + ".single[" + std::to_string(i) + "]";
        if (const json * seq = reader.find(single[i], where, "Sequence")) {
            if (reader.string(*seq, where + ".Sequence", "id") != "A" || seen_sequence) {
                reader.fail(where, "must be the one sequence A of a single-sequence template");
            }
            seen_sequence = true;
            continue;
        }
        const json &      special = reader.require(single[i], where, "SpecialToken");
        const std::string name    = reader.string(special, where + ".SpecialToken", "id");
        const std::string spath   = path + ".special_tokens[\"" + name + "\"]";
        const json &      ids     = reader.require(reader.require(specials, path + ".special_tokens", name.c_str()), spath, "ids");
        if (!ids.is_array()) {
            reader.fail(spath + ".ids", "must be a list of token ids");
        }
        for (size_t k = 0; k < ids.size(); ++k) {
            (seen_sequence ? added.suffix : added.prefix).push_back(reader.token_id(ids[k], spath + ".ids"));
        }
    }
    if (!seen_sequence) {
        reader.fail(path + ".single", "has no sequence A");
    }
    out.prefix.insert(out.prefix.begin(), added.prefix.begin(), added.prefix.end());
    out.suffix.insert(out.suffix.end(), added.suffix.begin(), added.suffix.end());
}

}  // namespace

void parse_post_processor(const json & config, const std::string & path, const JsonReader & reader, SpecialTemplate & out) {
    const std::string type = reader.type(config, path);
    if (type == "TemplateProcessing") {
        parse_template(config, path, reader, out);
    } else if (type == "ByteLevel") {
        // Only offsets change.
    } else if (type == "Sequence") {
        reader.for_each(config, path, "processors", [&](const json & item, const std::string & at) {
            parse_post_processor(item, at, reader, out);
        });
    } else {
        reader.unsupported(path, type);
    }
}

}  // namespace paft::tok
