#include "tokenizer/bpe.h"

#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "core/utf8.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <queue>
#include <unordered_map>

namespace paft::tok {
namespace {

// Pieces longer than this are not cached (they are rare, and would crowd the cache).
constexpr size_t kMaxCachedPiece = 256;
// Entries per thread before the cache is emptied and refilled.
constexpr size_t kMaxCacheEntries = 1 << 16;
// Characters below this code point (one or two UTF-8 bytes) have their ids in a table.
constexpr char32_t kSmallChars = 0x800;

std::atomic<uint64_t> next_instance{1};

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A thread's cache of piece -> ids for one model.
struct PieceCache {
    uint64_t                                                                        owner = 0;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> entries;
};

// Models a thread keeps caches for at once (a pipeline may alternate between two tokenizers).
constexpr size_t kCachesPerThread = 4;

// This thread's cache for `owner`, the most recently used first; the least recently used one is
// recycled for a model not seen yet (or destroyed: instance numbers are never reused).
PieceCache & thread_cache(uint64_t owner) {
    thread_local std::array<PieceCache, kCachesPerThread> caches;
    size_t                                                  k = 0;
    while (k + 1 < caches.size() && caches[k].owner != owner) {
        ++k;
    }
    if (caches[k].owner != owner) {
        caches[k].entries.clear();
        caches[k].owner = owner;
    }
    std::rotate(caches.begin(), caches.begin() + static_cast<long>(k), caches.begin() + static_cast<long>(k) + 1);
    return caches[0];
}

// A symbol of the piece being merged: a token id over a byte range, in a linked list.
struct Symbol {
    int32_t id;
    int32_t prev, next;  // indices, -1 at the ends
    size_t  len;         // bytes covered; 0 once merged into its left neighbour
};

struct Candidate {
    int32_t rank;
    int32_t left;    // index of the left symbol; ties go to the leftmost pair
    int32_t result;
    bool operator>(const Candidate & o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};

}  // namespace

void BpeModel::MergeTable::reserve(size_t n) {
    // At most half full.
    size_t capacity = 16;
    shift_          = 60;
    while (capacity < 2 * n) {
        capacity *= 2;
        --shift_;
    }
    slots_.assign(capacity, Slot{});
}

void BpeModel::MergeTable::insert(int32_t a, int32_t b, Merge merge) {
    const uint64_t k    = key(a, b);
    const size_t   mask = slots_.size() - 1;
    for (size_t i = slot_of(k);; i = (i + 1) & mask) {
        if (slots_[i].key == k) {
            return;
        }
        if (slots_[i].key == kEmpty) {
            slots_[i] = {k, merge};
            return;
        }
    }
}

const BpeModel::Merge * BpeModel::MergeTable::find(int32_t a, int32_t b) const {
    const uint64_t k    = key(a, b);
    const size_t   mask = slots_.size() - 1;
    for (size_t i = slot_of(k);; i = (i + 1) & mask) {
        if (slots_[i].key == k) {
            return &slots_[i].merge;
        }
        if (slots_[i].key == kEmpty) {
            return nullptr;
        }
    }
}

json parse_tokenizer_json(const std::string & text, const JsonReader & reader, BpeTables & tables) {
    // Depths of nlohmann's parser callback: root keys at 1, the model's keys at 2, the entries of
    // model.vocab and model.merges at 3.
    std::string root_key, model_key, vocab_key;
    bool        in_vocab = false, in_merges = false;
    auto        callback = [&](int depth, json::parse_event_t event, json & parsed) {
        using E = json::parse_event_t;
        if (event == E::key && depth == 1) {
            root_key = parsed.get<std::string>();
        } else if (event == E::key && depth == 2 && root_key == "model") {
            model_key = parsed.get<std::string>();
        } else if (depth == 2 && root_key == "model" && (event == E::object_start || event == E::array_start)) {
            in_vocab  = event == E::object_start && model_key == "vocab";
            in_merges = event == E::array_start && model_key == "merges";
        } else if (depth == 2 && (event == E::object_end || event == E::array_end)) {
            in_vocab = in_merges = false;
        } else if (depth == 3 && in_vocab && event == E::key) {
            vocab_key = std::move(parsed.get_ref<std::string &>());
            return false;
        } else if (depth == 3 && in_vocab && event == E::value) {
            tables.vocab.emplace_back(std::move(vocab_key), std::move(parsed));
            return false;
        } else if (depth == 3 && in_merges && (event == E::value || event == E::array_end)) {
            tables.merges.push_back(std::move(parsed));
            return false;
        }
        return true;
    };
    json root;
    try {
        check_json_depth(text, reader.file());
        root = json::parse(text, callback);
    } catch (const json::exception & e) {  // a syntax error, or a number beyond double's range
        reader.fail("", std::string("invalid JSON: ") + e.what());
    }
    if (!root.is_object()) {
        reader.fail("", "must be a JSON object, got " + json_snippet(root));
    }
    return root;
}

BpeModel::BpeModel(const json & config, BpeTables tables, const JsonReader & reader) : instance_(next_instance++) {
    const std::string path = "model";
    if (const json * dropout = reader.find(config, path, "dropout"); dropout && !(dropout->is_number() && dropout->get<double>() == 0)) {
        reader.fail(path + ".dropout", "must be null or 0 (BPE dropout is not supported), got " + json_snippet(*dropout));
    }
    for (const char * key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        if (auto affix = reader.opt_string(config, path, key); affix && !affix->empty()) {
            reader.fail(path + "." + key, "'" + *affix + "' is not supported (only empty or null)");
        }
    }
    fuse_unk_      = reader.boolean(config, path, "fuse_unk", false);
    byte_fallback_ = reader.boolean(config, path, "byte_fallback", false);
    ignore_merges_ = reader.boolean(config, path, "ignore_merges", false);

    const json & vocab = reader.require(config, path, "vocab");
    if (!vocab.is_object()) {
        reader.fail(path + ".vocab", "must be an object, got " + json_snippet(vocab));
    }
    size_t bytes = 0;
    for (const auto & entry : tables.vocab) {
        bytes += entry.first.size();
    }
    vocab_.reserve(tables.vocab.size(), bytes);
    for (const auto & [token, id] : tables.vocab) {
        // A repeated key: the last one wins, as in a JSON object.
        vocab_.set(token, reader.token_id(id, path + ".vocab[\"" + token + "\"]"));
    }
    // Two tokens with one id: decoding that id could give either (transformers keeps whichever
    // its map saw last), so the file is refused.
    std::unordered_map<int32_t, std::string> token_of;
    token_of.reserve(tables.vocab.size());
    vocab_.for_each([&](std::string_view token, int32_t id) {
        const auto [at, added] = token_of.emplace(id, std::string(token));
        if (!added) {
            reader.fail(path + ".vocab", fmt::format("'{}' and '{}' both have id {}", at->second, token, id));
        }
    });
    if (auto unk = reader.opt_string(config, path, "unk_token")) {
        unk_id_ = vocab_.find(*unk);
        if (*unk_id_ < 0) {
            reader.fail(path + ".unk_token", "'" + *unk + "' is not in the vocabulary");
        }
    }
    small_char_ids_.assign(kSmallChars, -1);
    vocab_.for_each([&](std::string_view token, int32_t id) {
        size_t i = 0;
        if (!token.empty() && static_cast<unsigned char>(token[0]) < 0xE0) {
            const char32_t cp = next_code_point(token, i);
            if (i == token.size()) {
                small_char_ids_[cp] = id;
            }
        }
    });
    if (byte_fallback_) {
        for (int b = 0; b < 256; ++b) {
            byte_ids_[b] = vocab_.find(fmt::format("<0x{:02X}>", b));
        }
    }
    if (const json & merges = reader.require(config, path, "merges"); !merges.is_array()) {
        reader.fail(path + ".merges", "must be a list, got " + json_snippet(merges));
    }
    parse_merges(tables.merges, reader);
}

void BpeModel::parse_merges(const std::vector<json> & merges, const JsonReader & reader) {
    merges_.reserve(merges.size());
    auto id_of = [&](std::string_view token, size_t rank) {
        const int32_t id = vocab_.find(token);
        if (id < 0) {
            reader.fail(fmt::format("model.merges[{}]", rank), "names '" + std::string(token) + "', which is not in the vocabulary");
        }
        return id;
    };
    std::string joined;  // reused: no allocation per merge
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const json &     merge = merges[rank];
        std::string_view a, b;
        if (merge.is_string()) {
            // "a b": the two tokens, which cannot contain spaces in this form.
            const std::string & text  = merge.get_ref<const std::string &>();
            const size_t        space = text.find(' ');
            if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
                reader.fail(fmt::format("model.merges[{}]", rank), "must be two tokens separated by one space, got " + json_snippet(merge));
            }
            a = std::string_view(text).substr(0, space);
            b = std::string_view(text).substr(space + 1);
        } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
            a = merge[0].get_ref<const std::string &>();
            b = merge[1].get_ref<const std::string &>();
        } else {
            reader.fail(fmt::format("model.merges[{}]", rank), "must be \"a b\" or [\"a\", \"b\"], got " + json_snippet(merge));
        }
        joined.assign(a).append(b);
        const int32_t result = id_of(joined, rank);
        merges_.insert(id_of(a, rank), id_of(b, rank), Merge{static_cast<int32_t>(rank), result});
    }
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t> & out) const {
    if (piece.empty()) {
        return;
    }
    if (piece.size() > kMaxCachedPiece) {
        encode_uncached(piece, out);
        return;
    }
    PieceCache & cache = thread_cache(instance_);
    if (const auto it = cache.entries.find(piece); it != cache.entries.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
    }
    const size_t first = out.size();
    encode_uncached(piece, out);
    if (cache.entries.size() >= kMaxCacheEntries) {
        cache.entries.clear();
    }
    cache.entries.emplace(std::string(piece), std::vector<int32_t>(out.begin() + static_cast<long>(first), out.end()));
}

void BpeModel::encode_uncached(std::string_view piece, std::vector<int32_t> & out) const {
    if (ignore_merges_) {
        if (const int32_t id = vocab_.find(piece); id >= 0) {
            out.push_back(id);
            return;
        }
    }
    // Initial symbols: one per character; a character outside the vocabulary becomes its byte
    // tokens (byte_fallback), else the unknown token (consecutive ones fused with fuse_unk), else
    // nothing, as tokenizers' BPE does.
    std::vector<Symbol> symbols;
    symbols.reserve(piece.size());
    auto push = [&](int32_t id, size_t len) {
        const auto n = static_cast<int32_t>(symbols.size());
        symbols.push_back({id, n - 1, -1, len});
        if (n > 0) {
            symbols[n - 1].next = n;
        }
    };
    bool last_unk = false;
    for (size_t i = 0; i < piece.size();) {
        const size_t start = i;
        const char32_t cp  = next_code_point(piece, i);
        const size_t   len = i - start;
        i                  = start;
        int32_t id         = -1;
        if (cp < kSmallChars) {
            id = small_char_ids_[cp];
        } else {
            id = vocab_.find(piece.substr(i, len));
        }
        if (id >= 0) {
            push(id, len);
            last_unk = false;
        } else if (byte_fallback_ &&
                   std::all_of(piece.begin() + static_cast<long>(i), piece.begin() + static_cast<long>(i + len),
                               [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
            for (size_t k = i; k < i + len; ++k) {
                push(byte_ids_[static_cast<unsigned char>(piece[k])], 1);
            }
            last_unk = false;
        } else if (unk_id_) {
            if (fuse_unk_ && last_unk) {
                symbols.back().len += len;
            } else {
                push(*unk_id_, len);
            }
            last_unk = true;
        }
        i += len;
    }
    if (symbols.empty()) {
        return;
    }
    symbols.back().next = -1;

    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int32_t left) {
        const int32_t right = symbols[left].next;
        if (right < 0) {
            return;
        }
        if (const Merge * m = merges_.find(symbols[left].id, symbols[right].id)) {
            queue.push({m->rank, left, m->result});
        }
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) {
        consider(i);
    }
    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        Symbol & left = symbols[top.left];
        // Stale entries: the left symbol was merged away, or its right neighbour changed.
        if (left.len == 0 || left.next < 0) {
            continue;
        }
        Symbol &   right = symbols[left.next];
        const Merge * m     = merges_.find(left.id, right.id);
        if (!m || m->result != top.result || m->rank != top.rank) {
            continue;
        }
        left.id  = top.result;
        left.len += right.len;
        right.len = 0;
        left.next = right.next;
        if (right.next >= 0) {
            symbols[right.next].prev = top.left;
        }
        if (left.prev >= 0) {
            consider(left.prev);
        }
        consider(top.left);
    }
    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
        out.push_back(symbols[i].id);
    }
}

}  // namespace paft::tok
