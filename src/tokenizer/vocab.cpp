#include "tokenizer/vocab.h"

#include <cstring>

namespace paft::tok {

uint64_t Vocab::hash(std::string_view s) {
    // FNV-1a over 8-byte words, then a final mix (tokens are short; this is fast and spreads well
    // enough for linear probing in a half-empty table).
    uint64_t h = 0xcbf29ce484222325ull ^ s.size();
    size_t   i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    h = (h ^ tail) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

void Vocab::reserve(size_t tokens, size_t bytes) {
    arena_.reserve(bytes);
    entries_.reserve(tokens);
    size_t capacity = 16;
    while (capacity < 2 * tokens) {
        capacity *= 2;
    }
    if (capacity > slots_.size()) {
        slots_.assign(capacity, -1);
        for (size_t e = 0; e < entries_.size(); ++e) {
            const uint64_t h = hash(text(entries_[e]));
            size_t         i = h & (slots_.size() - 1);
            while (slots_[i] >= 0) {
                i = (i + 1) & (slots_.size() - 1);
            }
            slots_[i] = static_cast<int32_t>(e);
        }
    }
}

void Vocab::grow() { reserve(entries_.size() * 2 + 8, arena_.size()); }

void Vocab::set(std::string_view token, int32_t id) {
    if (2 * (entries_.size() + 1) > slots_.size()) {
        grow();
    }
    const uint64_t h    = hash(token);
    const size_t   mask = slots_.size() - 1;
    size_t         i    = h & mask;
    for (; slots_[i] >= 0; i = (i + 1) & mask) {
        Entry & e = entries_[slots_[i]];
        if (e.hash == static_cast<uint32_t>(h >> 32) && text(e) == token) {
            e.id = id;
            return;
        }
    }
    slots_[i] = static_cast<int32_t>(entries_.size());
    entries_.push_back({static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(token.size()), id, static_cast<uint32_t>(h >> 32)});
    arena_.append(token);
}

}  // namespace paft::tok
