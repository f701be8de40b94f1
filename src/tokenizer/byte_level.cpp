#include "tokenizer/byte_level.h"

#include "core/utf8.h"

#include <array>
#include <cstdint>

namespace paft::tok {
namespace {

bool maps_to_itself(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct Tables {
    std::array<std::string, 256> to_char;
    std::array<int16_t, 0x144>   from_char;  // the mapped characters all lie below U+0144

    Tables() {
        from_char.fill(-1);
        int next = 0x100;
        for (int b = 0; b < 256; ++b) {
            const int cp = maps_to_itself(b) ? b : next++;
            append_utf8(to_char[b], static_cast<char32_t>(cp));
            from_char[cp] = static_cast<int16_t>(b);
        }
    }
};

const Tables & tables() {
    static const Tables t;
    return t;
}

}  // namespace

int char_to_byte(char32_t cp) { return cp < tables().from_char.size() ? tables().from_char[cp] : -1; }

void append_byte_level(std::string & out, std::string_view text) {
    const auto & map = tables().to_char;
    for (char c : text) {
        out += map[static_cast<unsigned char>(c)];
    }
}

}  // namespace paft::tok
