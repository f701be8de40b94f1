// tokenizer.json "model" of type BPE: the vocabulary, the ranked merges, and the encoding of one
// pre-tokenized piece into ids (merges applied lowest rank first, leftmost first among equals).
#pragma once

#include "tokenizer/json_reader.h"
#include "tokenizer/vocab.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paft::tok {

// model.vocab and model.merges, taken out of a tokenizer.json while it is parsed, so that their
// hundreds of thousands of entries never become JSON objects held in a map.
struct BpeTables {
    std::vector<std::pair<std::string, json>> vocab;   // in file order
    std::vector<json>                         merges;  // each "a b" or ["a", "b"]
};

// Parses a whole tokenizer.json, moving the vocabulary's entries and the merges into `tables`
// (the returned document keeps model.vocab and model.merges, emptied). InputError when invalid.
json parse_tokenizer_json(const std::string & text, const JsonReader & reader, BpeTables & tables);

class BpeModel {
public:
    // Parses config (the "model" object, its vocabulary and merges in `tables`); InputError naming
    // the field when invalid or unsupported.
    BpeModel(const json & config, BpeTables tables, const JsonReader & reader);

    // Appends the ids of `piece` (valid UTF-8) to `out`. Results of short pieces are cached per
    // thread, so this is thread-safe.
    void encode(std::string_view piece, std::vector<int32_t> & out) const;

    const Vocab & vocab() const { return vocab_; }

private:
    struct Merge {
        int32_t rank;    // position in the merges list: lower merges first
        int32_t result;  // id of the merged token
    };
    // (left id, right id) -> Merge, open addressing with linear probing: one probe or two per
    // lookup in a flat array, no node per entry.
    class MergeTable {
    public:
        void reserve(size_t n);
        // Adds the pair unless present (a repeated pair keeps its first, lowest rank).
        void insert(int32_t a, int32_t b, Merge merge);
        const Merge * find(int32_t a, int32_t b) const;

    private:
        struct Slot {
            uint64_t key  = kEmpty;
            Merge    merge{};
        };
        static constexpr uint64_t kEmpty = ~0ull;  // ids are below 2^24, so no pair packs to this
        static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
        size_t slot_of(uint64_t k) const { return (k * 0x9E3779B97F4A7C15ull) >> shift_; }

        std::vector<Slot> slots_;
        int               shift_ = 64;
    };
    void parse_merges(const std::vector<json> & merges, const JsonReader & reader);
    void encode_uncached(std::string_view piece, std::vector<int32_t> & out) const;

    Vocab                                 vocab_;
    MergeTable                            merges_;
    std::optional<int32_t>                unk_id_;
    bool                                  fuse_unk_      = false;
    bool                                  byte_fallback_ = false;
    bool                                  ignore_merges_ = false;
    std::array<int32_t, 256>              byte_ids_{};   // ids of "<0xXX>" when byte_fallback
    // Ids of the one-character tokens below U+0800 (-1: not in the vocabulary), which cover
    // byte-level alphabets and most Latin text without hashing.
    std::vector<int32_t>                  small_char_ids_;
    uint64_t                              instance_;     // tells per-thread caches apart
};

}  // namespace paft::tok
