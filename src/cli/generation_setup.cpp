#include "cli/generation_setup.h"

#include "core/error.h"
#include "model/config.h"

#include <fmt/format.h>

namespace paft {

void add_generation_flags(CLI::App & cmd, GenerationFlags & f) {
    cmd.add_option("--model", f.model, "Hugging Face model directory (with tokenizer.json)")->required();
    cmd.add_option("--adapter", f.adapters, "PEFT LoRA adapter directory, applied to the base unfused (repeatable)");
    cmd.add_option("--system", f.system, "System message put first in chat prompts");
    cmd.add_option("--chat-template", f.chat_template,
                   "Jinja file or built-in template (chatml, zephyr, llama3, llama2); default: the tokenizer's");
    cmd.add_option("--max-new-tokens", f.max_new_tokens, "New tokens at most")->capture_default_str();
    cmd.add_option("--temperature", f.sampling.temperature, "0 = greedy; else sample from softmax(logits / T)")
        ->capture_default_str();
    cmd.add_option("--top-k", f.sampling.top_k, "Sample among the k most likely tokens (0 = off)")
        ->capture_default_str();
    cmd.add_option("--top-p", f.sampling.top_p, "Sample from the smallest set of probability >= p (1 = off)")
        ->capture_default_str();
    cmd.add_option("--min-p", f.sampling.min_p, "Drop tokens less likely than min-p x the most likely (0 = off)")
        ->capture_default_str();
    cmd.add_option("--seed", f.sampling.seed, "Seed of the sampling draws")->capture_default_str();
    cmd.add_option("--stop", f.stop, "Stop string: the text ends before it (repeatable)");
    cmd.add_option("--threads", f.threads, "Threads (default: all cores)");
    add_load_flags(cmd, f.load);
}

void check_generation_flags(const GenerationFlags & f) {
    if (f.max_new_tokens < 1) {
        throw InputError(fmt::format("--max-new-tokens {} must be at least 1", f.max_new_tokens));
    }
    try {
        check_sampling_options(f.sampling);
    } catch (const InputError & e) {
        throw InputError(fmt::format("--{}", e.what()));  // "top-p 0 is out of range" names the flag
    }
    for (const std::string & s : f.stop) {
        if (s.empty()) {
            throw InputError("--stop '' is empty: a stop string needs at least one character");
        }
    }
}

GenerationSetup::GenerationSetup(const GenerationFlags & flags) :
    flags_(flags),
    config_(load_model_config(flags.model)),
    tokenizer_(Tokenizer::load(flags.model)),
    template_(choose_chat_template(flags.chat_template, tokenizer_, flags.model)),
    encoder_(tokenizer_, template_ ? &*template_ : nullptr, DataOptions{}) {
    options_.sampling       = flags.sampling;
    options_.max_new_tokens = flags.max_new_tokens;
    options_.stop           = flags.stop;
    options_.eos_ids        = model_eos_ids(flags.model, tokenizer_);
}

std::vector<int32_t> GenerationSetup::chat_prompt(nlohmann::ordered_json messages, const std::string & where) const {
    const bool has_system = !messages.empty() && messages[0].is_object() && messages[0].value("role", "") == "system";
    if (!flags_.system.empty() && !has_system) {
        messages.insert(messages.begin(), nlohmann::ordered_json{{"role", "system"}, {"content", flags_.system}});
    }
    return tokenizer_.encode(encoder_.render(messages, /*add_generation_prompt=*/true, where),
                             /*add_special_tokens=*/false);
}

std::vector<int32_t> GenerationSetup::text_prompt(const std::string & text) const {
    return tokenizer_.encode(text, /*add_special_tokens=*/true);
}

Decoder & GenerationSetup::decoder() {
    if (!decoder_) {
        auto model = load_model_with_adapters(flags_.model, flags_.adapters, flags_.load.options());
        backend_   = make_backend(flags_.threads);
        decoder_   = std::make_unique<Decoder>(*backend_, std::move(model));
    }
    return *decoder_;
}

}  // namespace paft
