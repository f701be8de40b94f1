#include "template/chat_template.h"

#include "core/error.h"
#include "template/builtin_templates.h"
#include "template/jinja_eval.h"
#include "template/jinja_parser.h"

namespace paft {

// Parsed once, never changed: copies of a ChatTemplate share it, also across threads.
struct ChatTemplate::Impl {
    std::string origin;
    jinja::Body body;
};

ChatTemplate::ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::ChatTemplate(const ChatTemplate &)                 = default;
ChatTemplate & ChatTemplate::operator=(const ChatTemplate &)     = default;
ChatTemplate::ChatTemplate(ChatTemplate &&) noexcept             = default;
ChatTemplate & ChatTemplate::operator=(ChatTemplate &&) noexcept = default;
ChatTemplate::~ChatTemplate()                                    = default;

ChatTemplate ChatTemplate::parse(std::string_view source, std::string origin) {
    auto impl    = std::make_shared<Impl>();
    impl->body   = jinja::parse_template(source, origin);
    impl->origin = std::move(origin);
    return ChatTemplate(std::move(impl));
}

std::string ChatTemplate::builtin_source(std::string_view name) {
    const char * source = builtin_template_source(name);
    if (!source) {
        std::string known;
        for (const std::string & n : builtin_names()) known += (known.empty() ? "" : ", ") + n;
        throw InputError("unknown chat template '" + std::string(name) + "' (built-in templates: " + known + ")");
    }
    return source;
}

ChatTemplate ChatTemplate::builtin(std::string_view name) {
    return parse(builtin_source(name), "built-in chat template '" + std::string(name) + "'");
}

std::vector<std::string> ChatTemplate::builtin_names() { return builtin_template_names(); }

std::string ChatTemplate::render(const nlohmann::ordered_json & messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json & globals) const {
    if (!messages.is_array()) throw InputError(impl_->origin + ": messages must be a JSON array");
    if (!globals.is_null() && !globals.is_object()) throw InputError(impl_->origin + ": template globals must be a JSON object");
    jinja::Dict variables;
    try {
        // The arguments apply_chat_template passes: tools and documents are None when absent.
        variables.set(jinja::Value::string("messages"), jinja::from_json(messages));
        variables.set(jinja::Value::string("tools"), jinja::Value::none());
        variables.set(jinja::Value::string("documents"), jinja::Value::none());
        variables.set(jinja::Value::string("add_generation_prompt"), jinja::Value::boolean(add_generation_prompt));
        if (globals.is_object()) {
            for (const auto & [k, v] : globals.items()) variables.set(jinja::Value::string(k), jinja::from_json(v));
        }
    } catch (const jinja::RenderError & e) {
        throw InputError(impl_->origin + ": " + e.what());
    }
    return jinja::render(impl_->body, variables, impl_->origin);
}

const std::string & ChatTemplate::origin() const { return impl_->origin; }

}  // namespace paft
