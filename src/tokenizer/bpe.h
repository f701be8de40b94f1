// tokenizer.json "model" of type BPE: the vocabulary, the ranked merges, and the encoding of one
// pre-tokenized piece into ids (merges applied lowest rank first, leftmost first among equals).
#pragma once

#include "tokenizer/json_reader.h"
#include "tokenizer/vocab.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace paft::tok {

class BpeModel {
public:
    // Parses config (the "model" object); InputError naming the field when invalid or unsupported.
    BpeModel(const json & config, const JsonReader & reader);

    // Appends the ids of `piece` (valid UTF-8) to `out`. Results of short pieces are cached per
    // thread, so this is thread-safe.
    void encode(std::string_view piece, std::vector<int32_t> & out) const;

    const TokenMap &                 vocab() const { return vocab_; }
    std::optional<int32_t>           unk_id() const { return unk_id_; }

private:
    struct Merge {
        int32_t rank;    // position in the merges list: lower merges first
        int32_t result;  // id of the merged token
    };
    static uint64_t pair_key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    void parse_merges(const json & merges, const JsonReader & reader);
    void encode_uncached(std::string_view piece, std::vector<int32_t> & out) const;

    TokenMap                              vocab_;
    std::unordered_map<uint64_t, Merge>   merges_;
    std::optional<int32_t>                unk_id_;
    bool                                  fuse_unk_      = false;
    bool                                  byte_fallback_ = false;
    bool                                  ignore_merges_ = false;
    std::array<int32_t, 256>              byte_ids_{};   // ids of "<0xXX>" when byte_fallback
    uint64_t                              instance_;     // tells per-thread caches apart
};

}  // namespace paft::tok
