// A weight matrix in the type it is kept in: a model's frozen weights stay in the file's own
// floats (F32, BF16, F16, read in place from the safetensors mapping), or are quantized at load
// (Q8_0 for load_in_8bit; NF4 or FP4 for load_in_4bit) into an owned buffer. Products with a
// Weight (Backend::matmul_weight) read it as it is; nothing converts the whole model to f32.
//
// Layouts (row-major [rows, cols]; a product y = x Wᵀ has cols inputs and rows outputs):
//   F32, BF16, F16  rows*cols values, little-endian.
//   Q8_0            llama.cpp's blocks of 32 values of a row: f16 scale d, int8 q[32]; x = d*q
//                   (tensor/quants.h). cols must be a multiple of 32.
//   NF4, FP4        bitsandbytes' 4-bit layout over the flattened tensor: value 2i in the high
//                   nibble of byte i, value 2i+1 in the low nibble; a code c in 0..15 means
//                   table[c] * absmax of its block of 64 values (kBnb4Block). The absmax values
//                   are plain f32, or (bnb_4bit_use_double_quant) quantized again: 8-bit codes
//                   into bitsandbytes' signed dynamic map, a scale per 256 of them, plus one
//                   offset (the mean absmax, subtracted before quantizing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace paft {

enum class WeightType : uint8_t { F32, BF16, F16, Q8_0, NF4, FP4 };

const char * weight_type_name(WeightType type);  // "f32", "bf16", "f16", "q8_0", "nf4", "fp4"

constexpr int64_t kQ8Block          = 32;   // values per Q8_0 block (34 bytes)
constexpr int64_t kBnb4Block        = 64;   // values per absmax in NF4/FP4
constexpr int64_t kBnb4AbsmaxBlock  = 256;  // absmax values per scale when double-quantized

struct Weight {
    WeightType   type = WeightType::F32;
    int64_t      rows = 0, cols = 0;
    const void * data = nullptr;  // the values or codes, as the layout above says
    // NF4/FP4 only: per 64-value block, either `absmax` (plain) or, double-quantized,
    // absmax[b] = bnb_dynamic_map()[absmax_q[b]] * absmax_scale[b / 256] + absmax_offset.
    const float *   absmax       = nullptr;  // [blocks]
    const uint8_t * absmax_q     = nullptr;  // [blocks]
    const float *   absmax_scale = nullptr;  // [ceil(blocks / 256)]
    float           absmax_offset = 0.0f;

    int64_t       numel() const { return rows * cols; }
    int64_t       blocks() const { return (numel() + kBnb4Block - 1) / kBnb4Block; }  // NF4/FP4
    size_t        bytes() const;  // memory the values and scales take
    const float * f32() const { return static_cast<const float *>(data); }  // F32 only
};

// Rows [row0, row0 + n) of w as f32 into dst [n, cols]. Exact for F32/BF16/F16; the format's
// dequantization otherwise (bit-identical to bitsandbytes' dequantize_4bit for NF4/FP4).
void dequantize_weight_rows(const Weight & w, int64_t row0, int64_t n, float * dst);

// ---- bitsandbytes' 4-bit formats (tensor/bnb4.cpp) ----------------------------------------

// The 16 code values of NF4 and FP4, indexed by the 4-bit code.
extern const float kNF4Values[16];
extern const float kFP4Values[16];
// bitsandbytes' create_dynamic_map(signed=True): the 256 values the double-quantized absmax
// codes index.
const float * bnb_dynamic_map();

// The absmax of blocks [b0, b0 + n) of an NF4/FP4 weight (decoded when double-quantized).
void bnb4_absmax(const Weight & w, int64_t b0, int64_t n, float * out);
// Values [first, first + count) of the flattened NF4/FP4 weight as f32 (table[code] * absmax,
// one f32 product as bitsandbytes computes it).
void bnb4_dequantize(const Weight & w, int64_t first, int64_t count, float * dst);

// A 4-bit weight with its own storage; `weight` points into the vectors (do not copy the
// struct without re-pointing: moving is fine, the vectors' buffers move with it).
struct Bnb4Weight {
    Weight               weight;
    std::vector<uint8_t> codes;         // [(rows*cols + 1) / 2]
    std::vector<float>   absmax;        // plain: [blocks]
    std::vector<uint8_t> absmax_q;      // double-quantized: [blocks]
    std::vector<float>   absmax_scale;  // double-quantized: [ceil(blocks / 256)]
};

// bitsandbytes' quantize_4bit (blocksize 64, quant_type nf4 or fp4, compress_statistics =
// double_quant) of the f32 matrix src [rows, cols]. Deterministic.
Bnb4Weight quantize_bnb4(const float * src, int64_t rows, int64_t cols, WeightType type, bool double_quant);

// ---- Q8_0 with its own storage -----------------------------------------------------------

struct Q8Weight {
    Weight               weight;
    std::vector<uint8_t> blocks;  // [rows * cols/32 * 34]
};

// llama.cpp's Q8_0 of the f32 matrix src [rows, cols]; cols must be a multiple of 32.
Q8Weight quantize_q8_0(const float * src, int64_t rows, int64_t cols);

}  // namespace paft
