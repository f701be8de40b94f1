#include "template/builtin_templates.h"

namespace paft {

namespace {

struct Builtin {
    const char * name;
    const char * source;
};

// Each is the template its model ships, character for character (whitespace control matters).
const Builtin kBuiltins[] = {
    // ChatML (OpenAI's format): transformers' former default template, used by e.g.
    // teknium/OpenHermes-2.5-Mistral-7B.
    {"chatml",
     R"({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})"},
    // HuggingFaceH4/zephyr-7b-beta, as the alignment-handbook writes it.
    {"zephyr",
     "{% for message in messages %}\n"
     "{% if message['role'] == 'user' %}\n"
     "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
     "{% elif message['role'] == 'system' %}\n"
     "{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
     "{% elif message['role'] == 'assistant' %}\n"
     "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
     "{% endif %}\n"
     "{% if loop.last and add_generation_prompt %}\n"
     "{{ '<|assistant|>' }}\n"
     "{% endif %}\n"
     "{% endfor %}"},
    // meta-llama/Meta-Llama-3-8B-Instruct.
    {"llama3",
     R"({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})"},
    // meta-llama/Llama-2-7b-chat-hf: [INST] turns, the system prompt in <<SYS>> inside the first.
    {"llama2",
     R"({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})"},
};

}  // namespace

const char * builtin_template_source(std::string_view name) {
    for (const Builtin & b : kBuiltins) {
        if (name == b.name) return b.source;
    }
    return nullptr;
}

std::vector<std::string> builtin_template_names() {
    std::vector<std::string> names;
    for (const Builtin & b : kBuiltins) names.emplace_back(b.name);
    return names;
}

}  // namespace paft
