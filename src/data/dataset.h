// Tokenised training examples from dataset records, with TRL's conventions:
//   SFT          {"messages": [...]}, {"prompt", "completion"} (strings or message lists), {"text"}
//   preferences  {"prompt"?, "chosen", "rejected"} (strings or message lists; without a prompt, or
//                with a string prompt beside message lists as in ultrafeedback_binarized, the
//                shared leading messages of chosen and rejected are the prompt)
// Conversations go through the chat template and are tokenised without adding special tokens
// (the template writes them); plain text is tokenised with them, with EOS appended when missing.
#pragma once

#include "data/records.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace paft {

enum class DataFormat { sft, preference };

struct DataOptions {
    int  max_length           = 1024;  // tokens per sequence (TRL's default); 0 = no limit
    int  max_prompt_length    = 0;     // preferences: prompt keeps its last N tokens; 0 = no limit
    bool assistant_only_loss  = true;  // messages: train on assistant turns only (else on all tokens)
    bool completion_only_loss = true;  // prompt + completion: train on the completion only
};

// One SFT sequence: labels are the ids where trained, -100 elsewhere (Hugging Face's convention:
// labels[t] is predicted at position t-1).
struct SftExample {
    std::string          where;  // "FILE:LINE"
    std::string          schema;  // "messages", "prompt-completion" or "text"
    std::vector<int32_t> input_ids, labels;
    int                  trained_tokens() const;  // labels[t] != -100 for t >= 1
};

// One preference pair as TRL's DPOTrainer holds it: the completions follow the shared prompt.
struct PreferenceExample {
    std::string          where;
    bool                 conversational = false;
    std::vector<int32_t> prompt_ids, chosen_ids, rejected_ids;
    // prompt + completion, and labels -100 on the prompt
    std::vector<int32_t> sequence(bool chosen) const;
    std::vector<int32_t> labels(bool chosen) const;
};

// What happened while reading a dataset: skipped examples and warnings, each naming FILE:LINE.
struct DataReport {
    size_t                   records = 0;
    std::vector<std::string> skipped;   // "FILE:LINE: reason"
    std::vector<std::string> warnings;  // "FILE:LINE: message"
};

// "PATH: N records: K examples, S skipped, W warnings" and the first 20 of each list, on stderr.
void print_data_report(const std::string & path, const DataReport & report, size_t kept);

DataFormat detect_format(const Record & record);  // preference when it has chosen and rejected
DataFormat detect_file_format(const std::string & path);  // by the file's first record (SFT when empty)

// The chat template to use: `choice` names a built-in template or a Jinja file; empty = the
// tokenizer's own (nullopt when it has none).
std::optional<ChatTemplate> choose_chat_template(const std::string & choice, const Tokenizer & tokenizer,
                                                 const std::string & tokenizer_dir);

class ExampleEncoder {
public:
    // `chat_template` may be null: conversational records are then an InputError asking for one.
    ExampleEncoder(const Tokenizer & tokenizer, const ChatTemplate * chat_template, DataOptions options);

    // nullopt when the example is skipped (the reason is added to `report`); bad input throws
    // InputError naming record.where.
    std::optional<SftExample>        encode_sft(const Record & record, DataReport & report) const;
    std::optional<PreferenceExample> encode_preference(const Record & record, DataReport & report) const;

    // Renders a conversation with the template and the tokenizer's special tokens.
    std::string render(const nlohmann::ordered_json & messages, bool add_generation_prompt,
                       const std::string & where) const;

private:
    std::vector<int32_t> encode_text(const std::string & text, bool add_special_tokens) const;
    std::vector<int32_t> encode_chat(const nlohmann::ordered_json & messages, bool add_generation_prompt,
                                     const std::string & where) const;
    std::vector<int32_t> assistant_labels(const nlohmann::ordered_json & messages, const std::vector<int32_t> & ids,
                                          const std::string & where) const;
    std::string          with_eos(const std::string & text, const std::string & where) const;
    void                 check_double_bos(const std::vector<int32_t> & ids, const std::string & where,
                                          DataReport & report) const;

    const Tokenizer &      tokenizer_;
    const ChatTemplate *   template_;
    DataOptions            options_;
    nlohmann::ordered_json globals_;  // special tokens for the template
};

// The truncation shared by every source of examples (TRL's): SFT keeps the first max_length
// tokens; preferences keep the prompt's last max_prompt_length tokens, then cut the completions to
// fit max_length. nullopt (with the reason in `report`) when nothing is left to train on.
std::optional<SftExample>        truncate_sft(SftExample example, const DataOptions & options, DataReport & report);
std::optional<PreferenceExample> truncate_preference(PreferenceExample example, const DataOptions & options,
                                                     DataReport & report);

// Every record of the file through `make`, and the examples it does not skip (nullopt).
template <typename Example>
std::vector<Example> load_examples(const std::string & path, DataReport & report,
                                   const std::function<std::optional<Example>(const Record &)> & make) {
    std::vector<Example> examples;
    for_each_record(path, [&](Record && r) {
        report.records++;
        if (auto ex = make(r)) {
            examples.push_back(std::move(*ex));
        }
        return true;
    });
    return examples;
}

std::vector<SftExample>        load_sft(const std::string & path, const ExampleEncoder & encoder, DataReport & report);
std::vector<PreferenceExample> load_preferences(const std::string & path, const ExampleEncoder & encoder,
                                                DataReport & report);

}  // namespace paft
