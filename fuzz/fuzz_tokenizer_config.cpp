// A tokenizer_config.json (special tokens, chat template, flags) next to the tiny model's
// tokenizer.json. What loads must then encode and decode; its chat template, when it has one,
// must parse and render a short conversation (or refuse with InputError).
#include "fuzz_util.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    static const std::string tokenizer_json = std::string(PAFT_SOURCE_DIR) + "/models/paft-tiny/tokenizer.json";
    const std::string        path           = paft::fuzz::write_input("tokenizer_config.json", data, size);
    paft::fuzz::expect_input_error_only([&] {
        const paft::Tokenizer tokenizer = paft::Tokenizer::from_files(tokenizer_json, path);
        const auto            ids       = tokenizer.encode("Hello there, general.", true);
        (void) tokenizer.decode(ids, true);
        const std::string & source = tokenizer.config().chat_template;
        if (!source.empty()) {
            const auto chat = paft::ChatTemplate::parse(source, path + ": chat_template");
            nlohmann::ordered_json globals = nlohmann::ordered_json::object();
            if (tokenizer.config().bos_token) globals["bos_token"] = *tokenizer.config().bos_token;
            if (tokenizer.config().eos_token) globals["eos_token"] = *tokenizer.config().eos_token;
            const auto messages = nlohmann::ordered_json::parse(
                R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}])");
            (void) chat.render(messages, true, globals);
        }
    });
    return 0;
}
