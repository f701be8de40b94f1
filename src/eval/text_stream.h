// The text of a sequence being generated, token by token: decoded as a whole (special tokens
// skipped, as transformers' decode(skip_special_tokens=True)), cut before the first stop string,
// and released for streaming only when it can no longer change.
//
// Text is final when it is followed by nothing that could still alter it: a trailing U+FFFD may
// be the first bytes of a character split across tokens; a trailing space may be removed by
// clean_up_tokenization_spaces (" ." -> "."); a suffix that is the start of a stop string may
// turn out to be one. Streamed pieces therefore concatenate to text() at the end.
#pragma once

#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace paft {

class TextStream {
public:
    TextStream(const Tokenizer & tokenizer, const std::vector<std::string> & stop);

    // Adds a generated token (not the EOS that ends the generation) and returns the text that
    // became final (may be empty). After a stop string appears, stopped() is true and the text is
    // cut before it.
    std::string add(int32_t token);
    // The end of the generation: everything not yet released.
    std::string finish();

    bool                         stopped() const { return stopped_; }
    const std::string &          text() const { return text_; }  // decoded so far, cut at a stop string
    const std::vector<int32_t> & tokens() const { return tokens_; }

private:
    const Tokenizer &        tokenizer_;
    std::vector<std::string> stop_;
    bool                     cleanup_spaces_;
    std::vector<int32_t>     tokens_;
    std::string              text_;
    std::string              released_;  // the text handed out so far, a prefix of text_
    bool                     stopped_ = false;

    size_t      final_length() const;  // bytes of text_ that can no longer change
    std::string release(size_t end);   // text_[released, end), if text_ still starts with released_
};

// Where the earliest occurrence of any of `stop` starts in `text` (std::string::npos if none).
// Empty stop strings are ignored.
size_t find_stop(const std::string & text, const std::vector<std::string> & stop);

}  // namespace paft
