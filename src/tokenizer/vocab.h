// Token string <-> id lookup for vocabularies of a few hundred thousand tokens: the strings in one
// arena, a flat open-addressing index over them (no allocation per token; a lookup is a hash, one
// or two probes and a comparison).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paft::tok {

class Vocab {
public:
    void reserve(size_t tokens, size_t bytes);
    // Maps `token` to `id`, replacing an earlier id of the same token.
    void set(std::string_view token, int32_t id);
    // The token's id, or -1.
    int32_t find(std::string_view token) const {
        if (slots_.empty()) {
            return -1;
        }
        const uint64_t h    = hash(token);
        const size_t   mask = slots_.size() - 1;
        for (size_t i = h & mask;; i = (i + 1) & mask) {
            const int32_t e = slots_[i];
            if (e < 0) {
                return -1;
            }
            if (entries_[e].hash == static_cast<uint32_t>(h >> 32) && text(entries_[e]) == token) {
                return entries_[e].id;
            }
        }
    }
    size_t size() const { return entries_.size(); }
    // Calls fn(token, id) for every token; the views stay valid while the vocabulary is unchanged.
    template <class F> void for_each(F && fn) const {
        for (const Entry & e : entries_) {
            fn(text(e), e.id);
        }
    }

private:
    struct Entry {
        uint32_t offset, length;  // in arena_
        int32_t  id;
        uint32_t hash;  // high half of the token's hash, to skip most string comparisons
    };
    static uint64_t  hash(std::string_view s);
    std::string_view text(const Entry & e) const { return std::string_view(arena_).substr(e.offset, e.length); }
    void             grow();

    std::string          arena_;
    std::vector<Entry>   entries_;
    std::vector<int32_t> slots_;  // entry indices, -1 when empty; at most half full
};

}  // namespace paft::tok
