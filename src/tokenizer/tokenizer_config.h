// tokenizer_config.json: special token strings and the chat template.
#pragma once

#include "tokenizer/tokenizer.h"

#include <string>

namespace paft::tok {

// Parses the file at `path`; InputError naming the file and the field when invalid.
TokenizerConfig parse_tokenizer_config(const std::string & path);

}  // namespace paft::tok
