// ggml's tensor types as GGUF stores them: the plain floats (F32, F16, BF16) and the block
// quantizations paft writes (Q8_0, Q4_0, Q5_0 with blocks of 32 values; Q4_K, Q6_K with
// super-blocks of 256). The byte layouts are llama.cpp's (ggml-common.h), so a file written here
// is read by llama.cpp as is; the code is ours.
//
// Layouts, per block (little-endian; d, dmin are IEEE half floats):
//   Q8_0  32 values, 34 bytes: d, int8 q[32]                         x = d * q
//   Q4_0  32 values, 18 bytes: d, uint8 qs[16] (value j in the low nibble of byte j,
//                              value j+16 in its high nibble)        x = d * (q - 8)
//   Q5_0  32 values, 22 bytes: d, uint8 qh[4] (bit j = 5th bit of value j), qs[16] as Q4_0
//                                                                     x = d * (q - 16)
//   Q4_K 256 values, 144 bytes: d, dmin, uint8 scales[12] (8 six-bit scales and 8 six-bit
//                              mins, packed), uint8 qs[128] (64 values per 32 bytes: sub-block
//                              2i in the low nibbles, 2i+1 in the high)  x = d*sc*q - dmin*m
//   Q6_K 256 values, 210 bytes: uint8 ql[128] (low 4 bits), uint8 qh[64] (high 2 bits),
//                              int8 scales[16] (one per 16 values), d    x = d * sc * (q - 32)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace paft {

// ggml_type ids (the numbers GGUF stores); only the types paft reads or writes.
enum class GgmlType : uint32_t {
    F32  = 0,
    F16  = 1,
    Q4_0 = 2,
    Q5_0 = 6,
    Q8_0 = 8,
    Q4_K = 12,
    Q6_K = 14,
    BF16 = 30,
};

const char *            ggml_type_name(GgmlType type);  // "f32", "q4_K", ...
std::optional<GgmlType> ggml_type_from_id(uint32_t id);   // nullopt for types paft does not know
int64_t                 ggml_block_size(GgmlType type);   // values per block (1 for floats)
size_t                  ggml_block_bytes(GgmlType type);  // bytes per block
// Bytes of a row of n values (n must be a multiple of the block size).
size_t                  ggml_row_bytes(GgmlType type, int64_t n);
bool                    ggml_is_quantized(GgmlType type);

// Converts `rows` rows of `n` f32 values (n a multiple of the type's block size) into the
// type's bytes at dst (rows * ggml_row_bytes(type, n) bytes). Deterministic: the same input
// gives the same bytes on every machine and thread count. Rows are independent, so callers may
// split work by rows across threads.
void quantize_rows(GgmlType type, const float * src, int64_t rows, int64_t n, uint8_t * dst);

// The inverse: `rows * n` f32 values from the type's bytes.
void dequantize_rows(GgmlType type, const uint8_t * src, int64_t rows, int64_t n, float * dst);

}  // namespace paft
