// paft chat: an interactive conversation with a model (and adapters). Each user line is added to
// the conversation, the whole conversation goes through the chat template, and the answer is
// streamed to standard output; the key/value cache of the conversation so far is kept between
// turns. "/reset" starts a new conversation, "/exit" or the end of input quits.
#include "cli/commands.h"
#include "cli/generation_setup.h"
#include "core/error.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <unistd.h>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

void print_or_fail(const std::string & text) {
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
        throw RuntimeFailure("cannot write to standard output");
    }
}

void run_chat(const GenerationFlags & flags) {
    GenerationSetup setup(flags);
    // Renders an empty user turn first, so a model without a chat template fails before loading.
    setup.chat_prompt(ojson::array({{{"role", "user"}, {"content", ""}}}), "paft chat");
    ConversationGenerator generator(setup.decoder(), setup.tokenizer());
    const bool            interactive = isatty(fileno(stdin));
    if (interactive) {
        fmt::print(stderr, "Type a message; /reset starts over, /exit quits.\n");
    }
    ojson    messages = ojson::array();
    uint64_t turn     = 0;
    for (std::string line;;) {
        if (interactive) {
            print_or_fail("> ");
        }
        if (!std::getline(std::cin, line) || line == "/exit") {
            break;
        }
        if (line == "/reset") {
            messages = ojson::array();
            generator.reset();
            continue;
        }
        messages.push_back({{"role", "user"}, {"content", line}});
        const std::vector<int32_t> prompt = setup.chat_prompt(messages, fmt::format("turn {}", turn + 1));
        const Generation           answer = generator.generate(prompt, setup.options(), turn++, print_or_fail);
        print_or_fail("\n");
        messages.push_back({{"role", "assistant"}, {"content", answer.text}});
    }
}

}  // namespace

void register_chat(CLI::App & app) {
    auto   flags = std::make_shared<GenerationFlags>();
    auto * cmd   = app.add_subcommand("chat", "Talk with a model: user lines on standard input, answers streamed");
    add_generation_flags(*cmd, *flags);
    cmd->callback([flags]() {
        check_generation_flags(*flags);
        run_chat(*flags);
    });
}

}  // namespace paft
