// tokenizer.json "normalizer": NFC, Prepend, Replace (String or Regex pattern) and Sequence.
#pragma once

#include "tokenizer/json_reader.h"

#include <memory>
#include <string>

namespace paft::tok {

class Normalizer {
public:
    virtual ~Normalizer() = default;
    // Rewrites `text` (valid UTF-8) in place.
    virtual void apply(std::string & text) const = 0;
};

// The normalizer described by `config` (at `path` in the file); InputError when unsupported.
std::unique_ptr<Normalizer> parse_normalizer(const json & config, const std::string & path, const JsonReader & reader);

}  // namespace paft::tok
