// GPT-2's byte-to-character map: every byte becomes a printable character (bytes 0x21-0x7E,
// 0xA1-0xAC and 0xAE-0xFF map to themselves, the others to U+0100 onwards in byte order), so
// byte-level vocabularies are written in text.
#pragma once

#include <string>
#include <string_view>

namespace paft::tok {

// The byte a character stands for, or -1 when it is not one of the 256.
int char_to_byte(char32_t cp);

// `text` with each byte replaced by its character, appended to `out`.
void append_byte_level(std::string & out, std::string_view text);

}  // namespace paft::tok
