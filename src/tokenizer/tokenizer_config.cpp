#include "tokenizer/tokenizer_config.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "tokenizer/json_reader.h"

namespace paft::tok {
namespace {

// A token given as "<s>" or as {"content": "<s>", ...} (an AddedToken's serialization).
std::optional<std::string> token_string(const json & root, const char * key, const JsonReader & reader) {
    const json * value = reader.find(root, "", key);
    if (!value) {
        return std::nullopt;
    }
    if (value->is_string()) {
        return value->get<std::string>();
    }
    if (value->is_object()) {
        return reader.string(*value, key, "content");
    }
    reader.fail(key, "must be a string or an object with \"content\", got " + json_snippet(*value));
}

std::string chat_template(const json & value, const JsonReader & reader) {
    if (value.is_string()) {
        return value.get<std::string>();
    }
    if (!value.is_array()) {
        reader.fail("chat_template", "must be a string or a list of {name, template}, got " + json_snippet(value));
    }
    for (size_t i = 0; i < value.size(); ++i) {
        const std::string path = "chat_template[" + std::to_string(i) + "]";
        if (reader.string(value[i], path, "name") == "default") {
            return reader.string(value[i], path, "template");
        }
    }
    return "";
}

}  // namespace

TokenizerConfig parse_tokenizer_config(const std::string & path) {
    const JsonReader reader(path);
    const std::string text = read_file(path);
    check_json_depth(text, path);
    const json root = json::parse(text, nullptr, false);
    if (root.is_discarded()) {
        throw InputError(path + ": invalid JSON");
    }
    if (!root.is_object()) {
        throw InputError(path + ": must be a JSON object, got " + json_snippet(root));
    }
    TokenizerConfig config;
    config.bos_token = token_string(root, "bos_token", reader);
    config.eos_token = token_string(root, "eos_token", reader);
    config.pad_token = token_string(root, "pad_token", reader);
    config.unk_token = token_string(root, "unk_token", reader);
    if (const json * extra = reader.find(root, "", "additional_special_tokens")) {
        if (!extra->is_array()) {
            reader.fail("additional_special_tokens", "must be a list, got " + json_snippet(*extra));
        }
        for (size_t i = 0; i < extra->size(); ++i) {
            const json & item = (*extra)[i];
            if (item.is_string()) {
                config.additional_special_tokens.push_back(item.get<std::string>());
            } else {
                config.additional_special_tokens.push_back(reader.string(item, "additional_special_tokens[" + std::to_string(i) + "]", "content"));
            }
        }
    }
    if (const json * tmpl = reader.find(root, "", "chat_template")) {
        config.chat_template = chat_template(*tmpl, reader);
    }
    config.clean_up_tokenization_spaces = reader.boolean(root, "", "clean_up_tokenization_spaces", false);
    // Not used (tokenizer.json's post-processor adds the special tokens), but a wrong type is a
    // broken file all the same.
    for (const char * flag : {"add_bos_token", "add_eos_token"}) {
        (void) reader.boolean(root, "", flag, false);
    }
    return config;
}

}  // namespace paft::tok
