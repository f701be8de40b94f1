// tokenizer.json "post_processor" for single sequences: TemplateProcessing (the ids of the special
// tokens around the text), ByteLevel (nothing to do for ids), Sequence, or null.
#pragma once

#include "tokenizer/json_reader.h"

#include <cstdint>
#include <vector>

namespace paft::tok {

struct SpecialTemplate {
    std::vector<int32_t> prefix, suffix;  // ids before and after the text's ids
};

// Adds what `config` puts around a single sequence to `out`.
void parse_post_processor(const json & config, const std::string & path, const JsonReader & reader, SpecialTemplate & out);

}  // namespace paft::tok
