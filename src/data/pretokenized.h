// Pre-tokenized datasets, which TRL accepts as they are and which need no tokenizer:
//   SFT          {"input_ids": [...], "labels": [...]?}   labels as Hugging Face's (-100 = not
//                trained; absent = every token trained)
//   preferences  {"prompt_input_ids", "chosen_input_ids", "rejected_input_ids"} (TRL's older
//                names) or {"prompt_ids", "chosen_ids", "rejected_ids"} (TRL 1.x)
// Ids must lie in [0, vocab). The same truncation as for text applies (dataset.h).
#pragma once

#include "data/dataset.h"
#include "data/records.h"

namespace paft {

// Whether a record holds token ids rather than text.
bool is_pretokenized(const Record & record);

std::vector<SftExample>        load_pretokenized_sft(const std::string & path, const DataOptions & options, int vocab,
                                                     DataReport & report);
std::vector<PreferenceExample> load_pretokenized_preferences(const std::string & path, const DataOptions & options,
                                                             int vocab, DataReport & report);

}  // namespace paft
