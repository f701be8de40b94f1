#include "data/dataset.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/json_snippet.h"
#include "model/batch.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <functional>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

const char * const kRoles[] = {"system", "user", "assistant", "tool"};

bool starts_with(const std::vector<int32_t> & ids, const std::vector<int32_t> & prefix) {
    return prefix.size() <= ids.size() && std::equal(prefix.begin(), prefix.end(), ids.begin());
}

// A string field of the record; InputError naming it otherwise.
const std::string & string_field(const Record & r, const char * name) {
    auto it = r.value.find(name);
    if (it == r.value.end() || !it->is_string()) {
        throw InputError(fmt::format("{}: field '{}' must be a string{}", r.where, name,
                                     it == r.value.end() ? " (missing)" : ", found " + json_snippet(*it)));
    }
    return it->get_ref<const std::string &>();
}

// A message list: objects with a known role and string content; an assistant turn must say
// something. Other fields (tool_calls, reasoning_content, ...) go to the template as they are.
void check_messages(const ojson & messages, const std::string & where, const char * field) {
    if (!messages.is_array() || messages.empty()) {
        throw InputError(fmt::format("{}: field '{}' must be a non-empty list of messages", where, field));
    }
    for (size_t i = 0; i < messages.size(); i++) {
        const ojson & m   = messages[i];
        std::string   loc = fmt::format("{}: {}[{}]", where, field, i);
        if (!m.is_object()) {
            throw InputError(fmt::format("{}: a message must be an object with 'role' and 'content'", loc));
        }
        auto role = m.find("role");
        if (role == m.end() || !role->is_string()) {
            throw InputError(fmt::format("{}: 'role' must be a string", loc));
        }
        const std::string & name = role->get_ref<const std::string &>();
        if (std::find(std::begin(kRoles), std::end(kRoles), name) == std::end(kRoles)) {
            throw InputError(fmt::format("{}: unknown role '{}' (expected system, user, assistant or tool)", loc,
                                         name.substr(0, 40)));
        }
        auto content = m.find("content");
        if (content == m.end() || !content->is_string()) {
            throw InputError(fmt::format("{}: 'content' must be a string", loc));
        }
        if (name == "assistant" && content->get_ref<const std::string &>().empty()) {
            throw InputError(fmt::format("{}: the assistant turn is empty", loc));
        }
    }
}

ojson concat(const ojson & a, const ojson & b) {
    ojson all = a;
    for (const ojson & m : b) {
        all.push_back(m);
    }
    return all;
}

ojson first_messages(const ojson & messages, size_t count) {
    ojson out = ojson::array();
    for (size_t i = 0; i < count; i++) {
        out.push_back(messages[i]);
    }
    return out;
}

// TRL's extract_prompt for conversations: the leading messages chosen and rejected share.
void split_implicit_prompt(const Record & r, ojson & prompt, ojson & chosen, ojson & rejected) {
    const ojson & c = r.value["chosen"];
    const ojson & j = r.value["rejected"];
    size_t        n = 0;
    while (n < c.size() && n < j.size() && c[n] == j[n]) {
        n++;
    }
    if (n == 0 || n == c.size() || n == j.size()) {
        throw InputError(fmt::format("{}: without a 'prompt', chosen and rejected must start with the same "
                                     "messages and then differ",
                                     r.where));
    }
    prompt   = first_messages(c, n);
    chosen   = ojson(c.begin() + (long) n, c.end());
    rejected = ojson(j.begin() + (long) n, j.end());
}

}  // namespace

int SftExample::trained_tokens() const {
    int n = 0;
    for (size_t t = 1; t < labels.size(); t++) {
        n += labels[t] != kIgnoreIndex;
    }
    return n;
}

std::vector<int32_t> PreferenceExample::sequence(bool chosen) const {
    std::vector<int32_t> ids = prompt_ids;
    const auto &         completion = chosen ? chosen_ids : rejected_ids;
    ids.insert(ids.end(), completion.begin(), completion.end());
    return ids;
}

std::vector<int32_t> PreferenceExample::labels(bool chosen) const {
    std::vector<int32_t> labels(prompt_ids.size(), kIgnoreIndex);
    const auto &         completion = chosen ? chosen_ids : rejected_ids;
    labels.insert(labels.end(), completion.begin(), completion.end());
    return labels;
}

DataFormat detect_format(const Record & record) {
    return record.value.contains("chosen") && record.value.contains("rejected") ? DataFormat::preference
                                                                                 : DataFormat::sft;
}

ExampleEncoder::ExampleEncoder(const Tokenizer & tokenizer, const ChatTemplate * chat_template, DataOptions options) :
    tokenizer_(tokenizer),
    template_(chat_template),
    options_(options),
    globals_(ojson::object()) {
    const TokenizerConfig & c = tokenizer.config();
    const std::pair<const char *, const std::optional<std::string> *> tokens[] = {
        {"bos_token", &c.bos_token}, {"eos_token", &c.eos_token}, {"unk_token", &c.unk_token},
        {"pad_token", &c.pad_token}};
    for (const auto & [name, value] : tokens) {
        if (*value) {
            globals_[name] = **value;
        }
    }
    if (!c.additional_special_tokens.empty()) {
        globals_["additional_special_tokens"] = c.additional_special_tokens;
    }
}

DataFormat detect_file_format(const std::string & path) {
    DataFormat format = DataFormat::sft;
    for_each_record(path, [&](Record && r) {
        format = detect_format(r);
        return false;
    });
    return format;
}

std::optional<ChatTemplate> choose_chat_template(const std::string & choice, const Tokenizer & tokenizer,
                                                 const std::string & tokenizer_dir) {
    if (choice.empty()) {
        if (tokenizer.config().chat_template.empty()) {
            return std::nullopt;
        }
        return ChatTemplate::parse(tokenizer.config().chat_template,
                                   tokenizer_dir + "/tokenizer_config.json: chat_template");
    }
    const auto names = ChatTemplate::builtin_names();
    if (std::find(names.begin(), names.end(), choice) != names.end()) {
        return ChatTemplate::builtin(choice);
    }
    if (!is_file(choice)) {
        throw InputError(fmt::format("--chat-template '{}' is neither a file nor a built-in template ({})", choice,
                                     fmt::join(names, ", ")));
    }
    const std::string source = read_file(choice);
    // An empty template renders every conversation as nothing: never what a user meant.
    if (source.find_first_not_of(" \t\r\n") == std::string::npos) {
        throw InputError(fmt::format("--chat-template {}: the file is empty", choice));
    }
    return ChatTemplate::parse(source, choice);
}

std::string ExampleEncoder::render(const ojson & messages, bool add_generation_prompt, const std::string & where) const {
    if (!template_) {
        throw InputError(fmt::format("{}: a conversation needs a chat template, and the tokenizer has none; name "
                                     "one with --chat-template (a Jinja file, or one of: {})",
                                     where, fmt::join(ChatTemplate::builtin_names(), ", ")));
    }
    try {
        return template_->render(messages, add_generation_prompt, globals_);
    } catch (const InputError & e) {
        throw InputError(fmt::format("{}: {}", where, e.what()));
    }
}

std::vector<int32_t> ExampleEncoder::encode_text(const std::string & text, bool add_special_tokens) const {
    return tokenizer_.encode(text, add_special_tokens);
}

std::vector<int32_t> ExampleEncoder::encode_chat(const ojson & messages, bool add_generation_prompt,
                                                 const std::string & where) const {
    return tokenizer_.encode(render(messages, add_generation_prompt, where), false);
}

std::string ExampleEncoder::with_eos(const std::string & text, const std::string & where) const {
    const auto & eos = tokenizer_.config().eos_token;
    if (!eos) {
        throw InputError(fmt::format("{}: plain-text examples end with EOS, and the tokenizer has no eos_token",
                                     where));
    }
    return text.ends_with(*eos) ? text : text + *eos;
}

// Assistant-only loss without {% generation %} markers: assistant message i's tokens start where
// the rendering of messages[:i] with the generation prompt ends (it must be a prefix of the whole
// conversation's tokens), and end with the first special token after that (the end of the turn:
// </s>, <|im_end|>, <|eot_id|>), or where the rendering of messages[:i+1] ends when that is a
// prefix too. What the template writes after the end-of-turn token (a newline) is not trained.
std::vector<int32_t> ExampleEncoder::assistant_labels(const ojson & messages, const std::vector<int32_t> & ids,
                                                      const std::string & where) const {
    std::vector<int32_t> labels(ids.size(), kIgnoreIndex);
    for (size_t i = 0; i < messages.size(); i++) {
        if (messages[i]["role"] != "assistant") {
            continue;
        }
        const std::vector<int32_t> prefix = encode_chat(first_messages(messages, i), true, where);
        if (!starts_with(ids, prefix)) {
            throw InputError(fmt::format("{}: the chat template renders the turns before message {} differently "
                                         "from the start of the whole conversation, so its assistant tokens cannot "
                                         "be found",
                                         where, i + 1));
        }
        const std::vector<int32_t> turn = encode_chat(first_messages(messages, i + 1), false, where);
        size_t                     end  = starts_with(ids, turn) ? turn.size() : ids.size();
        for (size_t k = prefix.size(); k < end; k++) {
            if (tokenizer_.is_special(ids[k])) {
                end = k + 1;
                break;
            }
        }
        for (size_t k = prefix.size(); k < end; k++) {
            labels[k] = ids[k];
        }
    }
    return labels;
}

void ExampleEncoder::check_double_bos(const std::vector<int32_t> & ids, const std::string & where,
                                      DataReport & report) const {
    const auto bos = tokenizer_.bos_id();
    if (bos && ids.size() >= 2 && ids[0] == *bos && ids[1] == *bos) {
        report.warnings.push_back(fmt::format("{}: starts with two BOS tokens (the chat template writes one and "
                                              "the tokenizer adds another)",
                                              where));
    }
}

std::optional<SftExample> ExampleEncoder::encode_sft(const Record & r, DataReport & report) const {
    SftExample ex;
    ex.where        = r.where;
    const ojson & v = r.value;
    if (v.contains("messages")) {
        ex.schema = "messages";
        check_messages(v["messages"], r.where, "messages");
        const bool any_assistant = std::any_of(v["messages"].begin(), v["messages"].end(),
                                               [](const ojson & m) { return m["role"] == "assistant"; });
        if (options_.assistant_only_loss && !any_assistant) {
            throw InputError(fmt::format("{}: the conversation has no assistant turn to train on", r.where));
        }
        ex.input_ids = encode_chat(v["messages"], false, r.where);
        ex.labels    = options_.assistant_only_loss ? assistant_labels(v["messages"], ex.input_ids, r.where)
                                                    : ex.input_ids;
    } else if (v.contains("prompt") || v.contains("completion")) {
        ex.schema = "prompt-completion";
        std::vector<int32_t> prompt_ids;
        if (v.contains("prompt") && v["prompt"].is_array()) {
            check_messages(v["prompt"], r.where, "prompt");
            check_messages(v.value("completion", ojson()), r.where, "completion");
            prompt_ids   = encode_chat(v["prompt"], true, r.where);
            ex.input_ids = encode_chat(concat(v["prompt"], v["completion"]), false, r.where);
        } else {
            const std::string & prompt = string_field(r, "prompt");
            prompt_ids                 = encode_text(prompt, true);
            ex.input_ids               = encode_text(prompt + with_eos(string_field(r, "completion"), r.where), true);
        }
        if (!starts_with(ex.input_ids, prompt_ids)) {
            report.warnings.push_back(fmt::format("{}: the tokenized prompt is not the start of the tokenized "
                                                  "prompt + completion (the mask splits them by the prompt's length)",
                                                  r.where));
        }
        ex.labels = ex.input_ids;
        if (options_.completion_only_loss) {
            std::fill_n(ex.labels.begin(), std::min(prompt_ids.size(), ex.labels.size()), kIgnoreIndex);
        }
    } else if (v.contains("text")) {
        ex.schema    = "text";
        ex.input_ids = encode_text(with_eos(string_field(r, "text"), r.where), true);
        ex.labels    = ex.input_ids;
    } else {
        throw InputError(fmt::format("{}: an SFT example needs 'messages', 'prompt' and 'completion', or 'text'",
                                     r.where));
    }
    check_double_bos(ex.input_ids, r.where, report);
    return truncate_sft(std::move(ex), options_, report);
}

std::optional<SftExample> truncate_sft(SftExample ex, const DataOptions & options, DataReport & report) {
    if (options.max_length > 0 && ex.input_ids.size() > (size_t) options.max_length) {
        ex.input_ids.resize(options.max_length);  // TRL's keep_start
        ex.labels.resize(options.max_length);
    }
    if (ex.trained_tokens() == 0) {
        report.skipped.push_back(fmt::format("{}: no token left to train on{}", ex.where,
                                             options.max_length > 0
                                                 ? fmt::format(" after truncation to max_length {}", options.max_length)
                                                 : ""));
        return std::nullopt;
    }
    return ex;
}

std::optional<PreferenceExample> ExampleEncoder::encode_preference(const Record & r, DataReport & report) const {
    PreferenceExample ex;
    ex.where        = r.where;
    const ojson & v = r.value;
    if (!v.contains("chosen") || !v.contains("rejected")) {
        throw InputError(fmt::format("{}: a preference example needs 'chosen' and 'rejected'", r.where));
    }
    std::vector<int32_t> chosen_all, rejected_all;  // prompt + completion
    if (v["chosen"].is_array() || v["rejected"].is_array() || (v.contains("prompt") && v["prompt"].is_array())) {
        ex.conversational = true;
        ojson prompt, chosen = v["chosen"], rejected = v["rejected"];
        if (chosen.is_array() != rejected.is_array()) {  // one text, one list: name the list's field
            const char * odd = chosen.is_array() ? "chosen" : "rejected";
            throw InputError(fmt::format("{}: field '{}' is a list but '{}' is not: both are text, or both lists of "
                                         "messages",
                                         r.where, odd, chosen.is_array() ? "rejected" : "chosen"));
        }
        check_messages(chosen, r.where, "chosen");
        check_messages(rejected, r.where, "rejected");
        if (v.contains("prompt") && v["prompt"].is_array()) {
            prompt = v["prompt"];
            check_messages(prompt, r.where, "prompt");
        } else if (v.contains("prompt") && !v["prompt"].is_string()) {
            throw InputError(fmt::format("{}: field 'prompt' must be a list of messages or a string, found {}", r.where,
                                         json_snippet(v["prompt"])));
        } else {
            // No prompt, or TRL's maybe_extract_prompt: a string prompt beside conversational
            // completions (ultrafeedback_binarized's layout) is dropped, the prompt being the
            // completions' shared leading messages.
            split_implicit_prompt(r, prompt, chosen, rejected);
        }
        ex.prompt_ids = encode_chat(prompt, true, r.where);
        chosen_all    = encode_chat(concat(prompt, chosen), false, r.where);
        rejected_all  = encode_chat(concat(prompt, rejected), false, r.where);
    } else {
        const std::string & prompt = string_field(r, "prompt");
        ex.prompt_ids              = encode_text(prompt, true);
        chosen_all                 = encode_text(prompt + with_eos(string_field(r, "chosen"), r.where), true);
        rejected_all               = encode_text(prompt + with_eos(string_field(r, "rejected"), r.where), true);
    }
    for (const auto * all : {&chosen_all, &rejected_all}) {
        if (!starts_with(*all, ex.prompt_ids)) {
            report.warnings.push_back(fmt::format("{}: the tokenized prompt is not the start of the tokenized "
                                                  "prompt + {} (the completion starts after the prompt's length)",
                                                  r.where, all == &chosen_all ? "chosen" : "rejected"));
        }
    }
    const size_t n = ex.prompt_ids.size();
    ex.chosen_ids.assign(chosen_all.begin() + (long) std::min(n, chosen_all.size()), chosen_all.end());
    ex.rejected_ids.assign(rejected_all.begin() + (long) std::min(n, rejected_all.size()), rejected_all.end());
    check_double_bos(ex.prompt_ids, r.where, report);
    return truncate_preference(std::move(ex), options_, report);
}

std::optional<PreferenceExample> truncate_preference(PreferenceExample ex, const DataOptions & options,
                                                     DataReport & report) {
    if (ex.chosen_ids.empty() || ex.rejected_ids.empty()) {
        throw InputError(fmt::format("{}: the {} completion has no tokens", ex.where,
                                     ex.chosen_ids.empty() ? "chosen" : "rejected"));
    }
    if (options.max_prompt_length > 0 && ex.prompt_ids.size() > (size_t) options.max_prompt_length) {
        ex.prompt_ids.erase(ex.prompt_ids.begin(), ex.prompt_ids.end() - options.max_prompt_length);
    }
    if (options.max_length > 0) {
        const size_t limit = options.max_length;
        if (ex.prompt_ids.size() >= limit) {
            report.skipped.push_back(fmt::format("{}: the prompt alone has {} tokens, max_length is {}", ex.where,
                                                 ex.prompt_ids.size(), limit));
            return std::nullopt;
        }
        const size_t room = limit - ex.prompt_ids.size();
        ex.chosen_ids.resize(std::min(room, ex.chosen_ids.size()));
        ex.rejected_ids.resize(std::min(room, ex.rejected_ids.size()));
    }
    return ex;
}


std::vector<SftExample> load_sft(const std::string & path, const ExampleEncoder & encoder, DataReport & report) {
    return load_examples<SftExample>(path, report, [&](const Record & r) { return encoder.encode_sft(r, report); });
}

std::vector<PreferenceExample> load_preferences(const std::string & path, const ExampleEncoder & encoder,
                                                DataReport & report) {
    return load_examples<PreferenceExample>(path, report,
                                            [&](const Record & r) { return encoder.encode_preference(r, report); });
}

void print_data_report(const std::string & path, const DataReport & report, size_t kept) {
    fmt::print(stderr, "{}: {} records: {} examples, {} skipped, {} warnings\n", path, report.records, kept,
               report.skipped.size(), report.warnings.size());
    for (const auto * list : {&report.skipped, &report.warnings}) {
        const char * kind = list == &report.skipped ? "skipped" : "warning";
        for (size_t i = 0; i < list->size() && i < 20; i++) {
            fmt::print(stderr, "{}: {}\n", kind, (*list)[i]);
        }
        if (list->size() > 20) {
            fmt::print(stderr, "... and {} more {}\n", list->size() - 20, kind);
        }
    }
}

}  // namespace paft
