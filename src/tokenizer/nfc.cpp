#include "tokenizer/nfc.h"

#include "core/error.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <algorithm>

namespace paft::tok {

void nfc_in_place(std::string & text) {
    // Most text is ASCII, which is NFC: skip ICU's checks for it.
    if (std::all_of(text.begin(), text.end(), [](char c) { return (unsigned char) c < 0x80; })) {
        return;
    }
    UErrorCode                  status = U_ZERO_ERROR;
    const icu::Normalizer2 *    nfc    = icu::Normalizer2::getNFCInstance(status);
    const icu::StringPiece      piece(text.data(), (int32_t) text.size());
    if (U_SUCCESS(status) && nfc->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) {
        return;
    }
    std::string                      out;
    icu::StringByteSink<std::string> sink(&out, (int32_t) text.size());
    status = U_ZERO_ERROR;
    nfc->normalizeUTF8(0, piece, sink, nullptr, status);
    if (U_FAILURE(status)) {
        throw RuntimeFailure(std::string("NFC normalization failed: ") + u_errorName(status));
    }
    text = std::move(out);
}

}  // namespace paft::tok
