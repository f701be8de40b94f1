#include "tokenizer/added_tokens.h"

#include "tokenizer/regex.h"
#include "core/utf8.h"

#include <algorithm>

namespace paft::tok {
namespace {

// The code point that ends text[0, end) (valid UTF-8, end > 0).
char32_t code_point_before(std::string_view text, size_t end) {
    size_t begin = end - 1;
    while (begin > 0 && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) {
        --begin;
    }
    return next_code_point(text, begin);
}

// A word character for single_word: \w with Unicode properties (letters, marks, digits, connector
// punctuation), close to the regex crate's is_word_character that tokenizers uses.
bool is_word_char(char32_t cp) {
    static const auto word = [] {
        std::string error;
        return Regex::compile(R"(^[\p{L}\p{M}\p{Nd}\p{Pc}]$)", error);
    }();
    std::string text;
    append_utf8(text, cp);
    std::vector<std::pair<size_t, size_t>> matches;
    word->find_all(text, matches);
    return !matches.empty();
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken> & tokens, bool normalized) {
    trie_.emplace_back();
    for (const AddedToken & token : tokens) {
        if (token.normalized != normalized || token.content.empty()) {
            continue;
        }
        int32_t node = 0;
        for (char c : token.content) {
            const auto byte = static_cast<unsigned char>(c);
            auto &     kids = trie_[node].children;
            auto       it   = std::find_if(kids.begin(), kids.end(), [&](const auto & k) { return k.first == byte; });
            if (it == kids.end()) {
                trie_[node].children.emplace_back(byte, static_cast<int32_t>(trie_.size()));
                node = static_cast<int32_t>(trie_.size());
                trie_.emplace_back();
            } else {
                node = it->second;
            }
        }
        // A repeated content keeps its first entry.
        if (trie_[node].token < 0) {
            trie_[node].token = static_cast<int32_t>(tokens_.size());
            tokens_.push_back(token);
            first_byte_[static_cast<unsigned char>(token.content[0])] = true;
        }
    }
}

std::pair<int32_t, size_t> AddedTokenMatcher::longest_at(std::string_view text, size_t pos) const {
    std::pair<int32_t, size_t> best{-1, 0};
    int32_t                    node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
        const auto   byte = static_cast<unsigned char>(text[i]);
        const auto & kids = trie_[node].children;
        auto         it   = std::find_if(kids.begin(), kids.end(), [&](const auto & k) { return k.first == byte; });
        if (it == kids.end()) {
            break;
        }
        node = it->second;
        if (trie_[node].token >= 0) {
            best = {trie_[node].token, i + 1 - pos};
        }
    }
    return best;
}

bool AddedTokenMatcher::accept(const AddedToken & token, std::string_view text, size_t begin, size_t end) const {
    if (!token.single_word) {
        return true;
    }
    const bool word_before = begin > 0 && is_word_char(code_point_before(text, begin));
    size_t     i           = end;
    const bool word_after  = end < text.size() && is_word_char(next_code_point(text, i));
    return !word_before && !word_after;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment> & out) const {
    if (tokens_.empty()) {
        if (!text.empty()) {
            out.push_back({text, -1});
        }
        return;
    }
    size_t done = 0;  // end of the last emitted segment
    size_t pos  = 0;  // where the search goes on
    while (pos < text.size()) {
        if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
            ++pos;
            continue;
        }
        const auto [index, length] = longest_at(text, pos);
        if (index < 0) {
            ++pos;
            continue;
        }
        const AddedToken & token = tokens_[index];
        size_t             begin = pos, end = pos + length;
        if (!accept(token, text, begin, end)) {
            // As tokenizers' match iterator: a refused match is skipped whole.
            pos = end;
            continue;
        }
        if (token.lstrip) {
            while (begin > done && is_whitespace(code_point_before(text, begin))) {
                size_t b = begin - 1;
                while ((static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) {
                    --b;
                }
                begin = b;
            }
        }
        if (token.rstrip) {
            while (end < text.size()) {
                size_t next = end;
                if (!is_whitespace(next_code_point(text, next))) {
                    break;
                }
                end = next;
            }
        }
        if (begin > done) {
            out.push_back({text.substr(done, begin - done), -1});
        }
        out.push_back({text.substr(begin, end - begin), token.id});
        done = pos = end;
    }
    if (done < text.size()) {
        out.push_back({text.substr(done), -1});
    }
}

std::vector<AddedToken> parse_added_tokens(const json & list, const JsonReader & reader) {
    if (!list.is_array()) {
        reader.fail("added_tokens", "must be a list");
    }
    std::vector<AddedToken> tokens;
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string path = "added_tokens[" + std::to_string(i) + "]";
        const json &      item = list[i];
        AddedToken        t;
        t.id          = reader.token_id(reader.require(item, path, "id"), path + ".id");
        t.content     = reader.string(item, path, "content");
        t.single_word = reader.boolean(item, path, "single_word", false);
        t.lstrip      = reader.boolean(item, path, "lstrip", false);
        t.rstrip      = reader.boolean(item, path, "rstrip", false);
        t.special     = reader.boolean(item, path, "special", false);
        // tokenizers' default: special tokens are matched in the raw text, others after normalization.
        t.normalized  = reader.boolean(item, path, "normalized", !t.special);
        if (t.content.empty()) {
            reader.fail(path + ".content", "must not be empty");
        }
        if (valid_utf8_prefix(t.content) != t.content.size()) {
            reader.fail(path + ".content", "is not valid UTF-8");
        }
        tokens.push_back(std::move(t));
    }
    return tokens;
}

}  // namespace paft::tok
