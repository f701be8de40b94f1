// tokenizer.json "added_tokens": tokens matched in the text before the model sees it (special tokens
// such as <s> or <|im_start|>, and extra words). Matching is leftmost-longest, as tokenizers'
// aho-corasick and transformers.js's trie both do.
#pragma once

#include "tokenizer/json_reader.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paft::tok {

struct AddedToken {
    std::string content;
    int32_t     id          = 0;
    bool        single_word = false;  // match only where not inside a word
    bool        lstrip      = false;  // also swallow the whitespace before it
    bool        rstrip      = false;  // and after it
    bool        normalized  = false;  // matched in the normalized text instead of the raw text
    bool        special     = false;
};

// A stretch of text, or a matched added token.
struct Segment {
    std::string_view text;
    int32_t          token = -1;  // the added token's id, or -1 for text
};

class AddedTokenMatcher {
public:
    // Over the tokens whose `normalized` flag equals `normalized`.
    AddedTokenMatcher(const std::vector<AddedToken> & tokens, bool normalized);

    bool empty() const { return tokens_.empty(); }

    // Appends the segments of `text` (valid UTF-8) to `out`: matched tokens (with the whitespace
    // lstrip/rstrip swallowed) and the non-empty text between them.
    void split(std::string_view text, std::vector<Segment> & out) const;

private:
    struct Node {
        std::vector<std::pair<unsigned char, int32_t>> children;
        int32_t                                        token = -1;  // index into tokens_ ending here
    };
    // Longest token starting at text[pos] as (index, length), or index -1.
    std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
    bool                       accept(const AddedToken & token, std::string_view text, size_t begin, size_t end) const;

    std::vector<AddedToken> tokens_;
    std::vector<Node>       trie_;
    bool                    first_byte_[256] = {};
};

std::vector<AddedToken> parse_added_tokens(const json & list, const JsonReader & reader);

}  // namespace paft::tok
