#include "tokenizer/nfc.h"

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

#include <algorithm>
#include <vector>

namespace paft::tok {
namespace {

using namespace paft::unicode;

// Hangul syllables are composed arithmetically (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
    if (cp < 0x300) {
        return 0;
    }
    const CombiningClass * end = kCombiningClasses + kCombiningClassCount;
    const CombiningClass * it  = std::lower_bound(kCombiningClasses, end, cp,
                                                  [](const CombiningClass & e, char32_t c) { return e.cp < c; });
    return it != end && it->cp == cp ? it->ccc : 0;
}

void decompose(char32_t cp, std::vector<char32_t> & out) {
    if (cp >= kSBase && cp < kSBase + kSCount) {
        const char32_t s = cp - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount != 0) {
            out.push_back(kTBase + s % kTCount);
        }
        return;
    }
    const Decomposition * end = kDecompositions + kDecompositionCount;
    const Decomposition * it =
        cp < 0xC0 ? end : std::lower_bound(kDecompositions, end, cp, [](const Decomposition & e, char32_t c) { return e.cp < c; });
    if (it != end && it->cp == cp) {
        out.insert(out.end(), kDecompositionData + it->offset, kDecompositionData + it->offset + it->length);
    } else {
        out.push_back(cp);
    }
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    }
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
        return a + (b - kTBase);
    }
    const Composition * end = kCompositions + kCompositionCount;
    const Composition * it  = std::lower_bound(kCompositions, end, std::make_pair(a, b), [](const Composition & e, auto key) {
        return e.first < key.first || (e.first == key.first && e.second < key.second);
    });
    return it != end && it->first == a && it->second == b ? it->composite : 0;
}

bool in_attention_ranges(char32_t cp) {
    const CodePointRange * end = kNfcAttention + kNfcAttentionCount;
    const CodePointRange * it =
        std::upper_bound(kNfcAttention, end, cp, [](char32_t c, const CodePointRange & r) { return c < r.lo; });
    return it != kNfcAttention && cp <= (it - 1)->hi;
}

// The attention set of the Basic Multilingual Plane as a bitmap (8 KiB), so that the quick check
// of CJK or Cyrillic text costs a load per character.
bool needs_attention(char32_t cp) {
    static const std::vector<bool> bmp = [] {
        std::vector<bool> bits(0x10000);
        for (char32_t c = 0; c < 0x10000; ++c) {
            bits[c] = in_attention_ranges(c);
        }
        return bits;
    }();
    return cp < 0x10000 ? bmp[cp] : in_attention_ranges(cp);
}

}  // namespace

namespace {

// NFC of a stretch that begins at a normalization boundary and ends before one.
void nfc_stretch(std::string_view text, std::string & out) {
    std::vector<char32_t> cps;
    for (size_t i = 0; i < text.size();) {
        decompose(next_code_point(text, i), cps);
    }
    // Canonical ordering: a stable sort by class of each run of non-starters.
    for (size_t i = 0; i < cps.size();) {
        if (combining_class(cps[i]) == 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < cps.size() && combining_class(cps[j]) != 0) {
            ++j;
        }
        std::stable_sort(cps.begin() + static_cast<long>(i), cps.begin() + static_cast<long>(j),
                         [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
        i = j;
    }
    // Composition: each character joins the last starter unless blocked by a character in between
    // with a class of 0 or not lower than its own.
    std::vector<char32_t> composed;
    size_t                starter   = 0;
    bool                  has_start = false;
    int                   last_cc   = -1;  // class of the last character kept after the starter; -1 when none
    for (char32_t cp : cps) {
        const int cc = combining_class(cp);
        if (has_start && (last_cc == -1 || last_cc < cc)) {
            if (const char32_t composite = compose(composed[starter], cp)) {
                composed[starter] = composite;
                continue;
            }
        }
        composed.push_back(cp);
        if (cc == 0) {
            starter   = composed.size() - 1;
            has_start = true;
            last_cc   = -1;
        } else {
            last_cc = cc;
        }
    }
    for (char32_t cp : composed) {
        append_utf8(out, cp);
    }
}

}  // namespace

void nfc_in_place(std::string & text) {
    // A character outside the attention set (class 0, quick check Yes) starts a normalization
    // boundary: NFC never reaches across it, so only the stretches between such characters that
    // hold an attention character need the full algorithm.
    std::string out;
    size_t      copied = 0, boundary = 0, i = 0;
    bool        changed = false;
    while (i < text.size()) {
        const size_t start = i;
        // Bytes below 0xCC start code points below U+0300, never in the attention set.
        if (static_cast<unsigned char>(text[i]) < 0xCC) {
            i += utf8_length(static_cast<unsigned char>(text[i]));
            boundary = start;
            continue;
        }
        if (!needs_attention(next_code_point(text, i))) {
            boundary = start;
            continue;
        }
        size_t end = i;
        while (end < text.size()) {
            size_t next = end;
            if (static_cast<unsigned char>(text[end]) < 0xCC || !needs_attention(next_code_point(text, next))) {
                break;
            }
            end = next;
        }
        if (!changed) {
            out.reserve(text.size());
            changed = true;
        }
        out.append(text, copied, boundary - copied);
        nfc_stretch(std::string_view(text).substr(boundary, end - boundary), out);
        copied = boundary = i = end;
    }
    if (changed) {
        out.append(text, copied, std::string::npos);
        text = std::move(out);
    }
}

}  // namespace paft::tok
