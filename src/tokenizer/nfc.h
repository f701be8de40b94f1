// Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering, canonical
// composition, over the tables of unicode_tables.cpp.
#pragma once

#include <string>
#include <string_view>

namespace paft::tok {

// NFC of valid UTF-8 text.
std::string nfc(std::string_view text);

// True when `text` (valid UTF-8) is certainly unchanged by NFC: no character in it has a non-zero
// combining class or an NFC quick-check value other than Yes.
bool nfc_quick_check(std::string_view text);

}  // namespace paft::tok
