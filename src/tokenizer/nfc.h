// Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering, canonical
// composition, over the tables of unicode_tables.cpp.
#pragma once

#include <string>
#include <string_view>

namespace paft::tok {

// Rewrites valid UTF-8 text into NFC. Only the stretches around characters with a non-zero
// combining class or an NFC quick-check value other than Yes are worked on; text without any is
// left untouched.
void nfc_in_place(std::string & text);

}  // namespace paft::tok
