// UTF-8 helpers: strict validation and decoding, lossy decoding of arbitrary bytes, encoding.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace paft {

// Length of the valid UTF-8 prefix of `s` (s.size() when all of it is valid). Refuses overlong
// forms, surrogates and code points above U+10FFFF, as Rust's str and JS's TextDecoder do.
size_t valid_utf8_prefix(std::string_view s);

// Decodes the code point at s[i] of valid UTF-8 and advances i past it.
inline char32_t next_code_point(std::string_view s, size_t & i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
        i += 1;
        return b0;
    }
    auto cont = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
    char32_t cp;
    if (b0 < 0xE0) {
        cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | cont(1);
        i += 2;
    } else if (b0 < 0xF0) {
        cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
        i += 3;
    } else {
        cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
        i += 4;
    }
    return cp;
}

// Byte length of the UTF-8 sequence that starts with `lead` (valid input).
inline size_t utf8_length(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

void append_utf8(std::string & out, char32_t cp);

// Bytes to text, each ill-formed subsequence replaced by U+FFFD (the WHATWG decoder's "maximal
// subpart" rule, as JS's TextDecoder and Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);

// Unicode White_Space (Rust's char::is_whitespace).
bool is_whitespace(char32_t cp);

}  // namespace paft
