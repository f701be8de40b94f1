// Chat templates: the Jinja `chat_template` of tokenizer_config.json rendered as transformers'
// apply_chat_template does (trim_blocks, lstrip_blocks, loop controls, raise_exception, tojson
// with ensure_ascii off), by paft's own interpreter of the Jinja subset real templates use.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace paft {

class ChatTemplate {
public:
    // Parses Jinja source; `origin` names where it came from in errors (a file, or
    // "DIR/tokenizer_config.json: chat_template"). Syntax errors are InputErrors with line numbers.
    static ChatTemplate parse(std::string_view source, std::string origin);
    // A built-in template by name (see builtin_names()); InputError listing the names otherwise.
    static ChatTemplate builtin(std::string_view name);
    // The Jinja source of a built-in template (InputError as for builtin()).
    static std::string builtin_source(std::string_view name);
    static std::vector<std::string> builtin_names();

    // Renders `messages` (a JSON array of {role, content, ...} objects). `globals` holds the
    // special tokens as transformers passes them (bos_token, eos_token, unk_token, pad_token,
    // additional_special_tokens), each only when set, and any other template variable (e.g.
    // `tools`, `enable_thinking`). `tools` and `documents` are none unless given there, as
    // apply_chat_template passes them. A template's raise_exception(msg) is an InputError
    // carrying msg; other errors name the origin and line.
    std::string render(const nlohmann::ordered_json & messages, bool add_generation_prompt,
                       const nlohmann::ordered_json & globals) const;

    const std::string & origin() const;

    ChatTemplate(const ChatTemplate &);
    ChatTemplate & operator=(const ChatTemplate &);
    ChatTemplate(ChatTemplate &&) noexcept;
    ChatTemplate & operator=(ChatTemplate &&) noexcept;
    ~ChatTemplate();

private:
    struct Impl;
    explicit ChatTemplate(std::shared_ptr<const Impl> impl);
    std::shared_ptr<const Impl> impl_;
};

}  // namespace paft
