// tokenizer.json "pre_tokenizer": Split, ByteLevel, Metaspace and Sequence. A pre-tokenizer cuts
// text into pieces that the model encodes independently.
#pragma once

#include "tokenizer/json_reader.h"

#include <memory>
#include <string>
#include <vector>

namespace paft::tok {

class PreTokenizer {
public:
    virtual ~PreTokenizer() = default;
    // Replaces `pieces` by their pre-tokenization, in order, without empty pieces.
    // `first_starts_text`: pieces[0] begins at the start of the whole input (Metaspace "first").
    virtual void apply(std::vector<std::string> & pieces, bool first_starts_text) const = 0;
};

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json & config, const std::string & path, const JsonReader & reader);

}  // namespace paft::tok
