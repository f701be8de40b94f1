// What `paft generate` and `paft chat` share: the model, sampling and template flags, and the
// model with its adapters, tokenizer, chat template and decoder they load.
#pragma once

#include "cli/load_flags.h"
#include "core/backend.h"
#include "data/dataset.h"
#include "eval/generate.h"
#include "model/inference.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paft {

struct GenerationFlags {
    std::string              model, system, chat_template;
    std::vector<std::string> adapters, stop;
    SamplingOptions          sampling;
    int                      max_new_tokens = 256;
    int                      threads        = 0;
    LoadFlags                load;
};

// --model, --adapter, --system, --chat-template, --max-new-tokens, the sampling flags, --stop,
// --threads and the loading flags.
void add_generation_flags(CLI::App & cmd, GenerationFlags & flags);

// InputError for values out of range (before anything is loaded).
void check_generation_flags(const GenerationFlags & flags);

// The loaded pieces; built in place (the encoder and decoder point at the other members).
class GenerationSetup {
public:
    explicit GenerationSetup(const GenerationFlags & flags);

    // Token ids of a conversation rendered by the chat template with the generation prompt; the
    // --system message goes first when the conversation has none. `where` names the input.
    std::vector<int32_t> chat_prompt(nlohmann::ordered_json messages, const std::string & where) const;
    // Token ids of raw text, with the tokenizer's special tokens (BOS) as tokenizer(text) adds.
    std::vector<int32_t> text_prompt(const std::string & text) const;
    // Loads the model and adapters (slow: done after the inputs are checked).
    Decoder &            decoder();

    const Tokenizer &         tokenizer() const { return tokenizer_; }
    const GenerationOptions & options() const { return options_; }
    const ModelConfig &       config() const { return config_; }

private:
    GenerationFlags             flags_;
    ModelConfig                 config_;
    Tokenizer                   tokenizer_;
    std::optional<ChatTemplate> template_;
    ExampleEncoder              encoder_;
    GenerationOptions           options_;
    std::unique_ptr<Backend>    backend_;
    std::unique_ptr<Decoder>    decoder_;
};

}  // namespace paft
