// The Jinja interpreter of chat templates: lexer, parser and evaluator, rendering the input as a
// template over a conversation with a system prompt, tools and the usual special tokens. The
// bounds (statements executed, sizes built, output size) turn runaway templates into InputError.
#include "fuzz_util.h"
#include "template/chat_template.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    static const auto messages = nlohmann::ordered_json::parse(R"([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4", "tool_calls": [{"type": "function",
         "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
        {"role": "user", "content": "And \u00e9\u65e5 + 1?"}])");
    static const auto globals = nlohmann::ordered_json::parse(R"({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "tools": [{"type": "function", "function": {"name": "add", "parameters": {"a": "int"}}}],
        "enable_thinking": false})");
    const std::string source(reinterpret_cast<const char *>(data), size);
    paft::fuzz::expect_input_error_only([&] {
        const auto chat = paft::ChatTemplate::parse(source, "template.jinja");
        (void) chat.render(messages, true, globals);
        (void) chat.render(messages, false, globals);
    });
    return 0;
}
