// Unicode Normalization Form C (UAX #15), by ICU (libicu-dev).
#pragma once

#include <string>

namespace paft::tok {

// Rewrites valid UTF-8 text into NFC; text already in NFC (all ASCII text is) is left untouched.
void nfc_in_place(std::string & text);

}  // namespace paft::tok
