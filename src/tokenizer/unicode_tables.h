// Unicode data for NFC (generated into unicode_tables.cpp by tools/tokenizer/make_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace paft::unicode {

struct CombiningClass {
    char32_t cp;
    uint8_t  ccc;  // canonical combining class, never 0 here
};
struct Decomposition {
    char32_t cp;
    uint16_t offset, length;  // the full canonical decomposition in kDecompositionData
};
struct Composition {
    char32_t first, second, composite;  // sorted by (first, second)
};
struct CodePointRange {
    char32_t lo, hi;  // inclusive
};

extern const CombiningClass kCombiningClasses[];
extern const size_t         kCombiningClassCount;
extern const char32_t       kDecompositionData[];
extern const Decomposition  kDecompositions[];
extern const size_t         kDecompositionCount;
extern const Composition    kCompositions[];
extern const size_t         kCompositionCount;
// Code points with a non-zero class or NFC_Quick_Check No/Maybe: text without any is already NFC.
extern const CodePointRange kNfcAttention[];
extern const size_t         kNfcAttentionCount;

}  // namespace paft::unicode
