// tokenizer.json "decoder": ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace and Sequence.
// A decoder turns the tokens' strings back into text.
#pragma once

#include "tokenizer/json_reader.h"

#include <memory>
#include <string>
#include <vector>

namespace paft::tok {

struct DecodedPiece {
    std::string text;
    bool        added = false;  // an added token's content, which ByteLevel passes through as is
};

class Decoder {
public:
    virtual ~Decoder() = default;
    virtual void decode_chain(std::vector<DecodedPiece> & pieces) const = 0;
};

std::unique_ptr<Decoder> parse_decoder(const json & config, const std::string & path, const JsonReader & reader);

}  // namespace paft::tok
