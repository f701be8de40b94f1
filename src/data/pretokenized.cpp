#include "data/pretokenized.h"

#include "core/error.h"
#include "io/json_snippet.h"
#include "model/batch.h"

#include <fmt/format.h>

namespace paft {
namespace {

using ojson = nlohmann::ordered_json;

// The first of `names` the record has, or null.
const char * field_of(const Record & r, std::initializer_list<const char *> names) {
    for (const char * name : names) {
        if (r.value.contains(name)) {
            return name;
        }
    }
    return nullptr;
}

// A list of integers in [lo, vocab); `allow_ignore` also accepts -100 (labels).
std::vector<int32_t> id_list(const Record & r, const char * name, int vocab, bool allow_ignore) {
    const ojson & v = r.value[name];
    if (!v.is_array()) {
        throw InputError(fmt::format("{}: '{}' must be a list of token ids, found {}", r.where, name, json_snippet(v)));
    }
    std::vector<int32_t> ids;
    ids.reserve(v.size());
    for (const ojson & x : v) {
        const bool ok = x.is_number_integer() &&
                        ((x.get<int64_t>() >= 0 && x.get<int64_t>() < vocab) ||
                         (allow_ignore && x.get<int64_t>() == kIgnoreIndex));
        if (!ok) {
            throw InputError(fmt::format("{}: '{}' must hold integers in [0, {}) (the model's vocabulary){}, found {}",
                                         r.where, name, vocab, allow_ignore ? " or -100" : "", json_snippet(x)));
        }
        ids.push_back(x.get<int32_t>());
    }
    return ids;
}

std::optional<SftExample> sft_example(const Record & r, const DataOptions & options, int vocab, DataReport & report) {
    if (!r.value.contains("input_ids")) {
        throw InputError(fmt::format("{}: a pre-tokenized SFT example needs 'input_ids'", r.where));
    }
    SftExample ex;
    ex.where     = r.where;
    ex.schema    = "input_ids";
    ex.input_ids = id_list(r, "input_ids", vocab, false);
    if (ex.input_ids.empty()) {
        throw InputError(fmt::format("{}: 'input_ids' is empty", r.where));
    }
    ex.labels = r.value.contains("labels") ? id_list(r, "labels", vocab, true) : ex.input_ids;
    if (ex.labels.size() != ex.input_ids.size()) {
        throw InputError(fmt::format("{}: 'labels' has {} entries, 'input_ids' {}", r.where, ex.labels.size(),
                                     ex.input_ids.size()));
    }
    return truncate_sft(std::move(ex), options, report);
}

std::optional<PreferenceExample> preference_example(const Record & r, const DataOptions & options, int vocab,
                                                    DataReport & report) {
    const char * prompt   = field_of(r, {"prompt_input_ids", "prompt_ids"});
    const char * chosen   = field_of(r, {"chosen_input_ids", "chosen_ids"});
    const char * rejected = field_of(r, {"rejected_input_ids", "rejected_ids"});
    if (!prompt || !chosen || !rejected) {
        throw InputError(fmt::format("{}: a pre-tokenized preference example needs 'prompt_input_ids', "
                                     "'chosen_input_ids' and 'rejected_input_ids'",
                                     r.where));
    }
    PreferenceExample ex;
    ex.where        = r.where;
    ex.prompt_ids   = id_list(r, prompt, vocab, false);
    ex.chosen_ids   = id_list(r, chosen, vocab, false);
    ex.rejected_ids = id_list(r, rejected, vocab, false);
    return truncate_preference(std::move(ex), options, report);
}

}  // namespace

bool is_pretokenized(const Record & record) {
    return field_of(record, {"input_ids", "prompt_input_ids", "chosen_input_ids", "prompt_ids", "chosen_ids"}) !=
           nullptr;
}

std::vector<SftExample> load_pretokenized_sft(const std::string & path, const DataOptions & options, int vocab,
                                              DataReport & report) {
    return load_examples<SftExample>(path, report, [&](const Record & r) { return sft_example(r, options, vocab, report); });
}

std::vector<PreferenceExample> load_pretokenized_preferences(const std::string & path, const DataOptions & options,
                                                             int vocab, DataReport & report) {
    return load_examples<PreferenceExample>(path, report,
                                   [&](const Record & r) { return preference_example(r, options, vocab, report); });
}

}  // namespace paft
