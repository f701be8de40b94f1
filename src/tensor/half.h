// f32 <-> bf16/f16 conversions (round to nearest even), shared by the safetensors reader and
// writer, the GGUF formats and the typed weights' kernels.
#pragma once

#include <bit>
#include <cstdint>

namespace paft {

inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
float        f16_to_f32(uint16_t h);
uint16_t     f32_to_bf16(float f);
uint16_t     f32_to_f16(float f);

}  // namespace paft
