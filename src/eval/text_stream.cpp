#include "eval/text_stream.h"

#include "core/error.h"
#include "core/utf8.h"

#include <fmt/format.h>

#include <algorithm>

namespace paft {
namespace {

// What transformers' clean_up_tokenization rewrites (each loses its leading space): text that
// ends with the start of one of these may still change when the next token comes.
const std::vector<std::string> kCleanupPatterns = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've",
                                                   " 're"};

// Length of the longest suffix of text[0, end) that is a proper prefix of one of `patterns`.
size_t pending_prefix(const std::string & text, size_t end, const std::vector<std::string> & patterns) {
    size_t longest = 0;
    for (const std::string & p : patterns) {
        for (size_t n = std::min(end, p.empty() ? 0 : p.size() - 1); n > longest; n--) {
            if (text.compare(end - n, n, p, 0, n) == 0) {
                longest = n;
                break;
            }
        }
    }
    return longest;
}

}  // namespace

size_t find_stop(const std::string & text, const std::vector<std::string> & stop) {
    size_t first = std::string::npos;
    for (const std::string & s : stop) {
        if (!s.empty()) {
            first = std::min(first, text.find(s));
        }
    }
    return first;
}

TextStream::TextStream(const Tokenizer & tokenizer, const std::vector<std::string> & stop) :
    tokenizer_(tokenizer),
    stop_(stop),
    cleanup_spaces_(tokenizer.config().clean_up_tokenization_spaces) {
    for (const std::string & s : stop_) {
        if (valid_utf8_prefix(s) != s.size()) {
            throw InputError(fmt::format("stop string {:?} is not valid UTF-8", s));
        }
    }
}

std::string TextStream::add(int32_t token) {
    tokens_.push_back(token);
    text_             = tokenizer_.decode(tokens_, /*skip_special_tokens=*/true);
    const size_t stop = find_stop(text_, stop_);
    if (stop != std::string::npos) {
        text_.resize(stop);
        stopped_ = true;
        return release(text_.size());
    }
    return release(final_length());
}

std::string TextStream::finish() {
    return release(text_.size());
}

size_t TextStream::final_length() const {
    size_t end = valid_utf8_prefix(text_);
    // U+FFFD (EF BF BD) stands for bytes of a character whose other bytes may come next
    while (end >= 3 && text_.compare(end - 3, 3, "\xEF\xBF\xBD") == 0) {
        end -= 3;
    }
    if (cleanup_spaces_) {
        end -= pending_prefix(text_, end, kCleanupPatterns);
    }
    return end - pending_prefix(text_, end, stop_);
}

std::string TextStream::release(size_t end) {
    if (end <= released_.size() || text_.compare(0, released_.size(), released_) != 0) {
        return "";
    }
    std::string piece = text_.substr(released_.size(), end - released_.size());
    released_ += piece;
    return piece;
}

}  // namespace paft
