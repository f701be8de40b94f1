// Products with a Q8_0 weight for many activation rows the way llama.cpp computes them: x's rows
// quantized to q8_0 blocks too (llama.cpp's rule: d = absmax / 127 stored as f16, q = round(x / d)),
// each block's 32 products summed exactly in int32, scaled by d_x * d_w and accumulated over the
// blocks in order with fused multiply-adds:
//     y[m, n] = sum over blocks b of  (sum_k qx[m, 32b + k] * qw[n, 32b + k]) * (d_w[n, b] * d_x[m, b])
// With AVX-512 VNNI it multiplies int8 with int8 (vpdpbusd), 16 weight rows per instruction; the
// portable code performs the same operations one output at a time, so both give the same bits.
//
// This is not the f32 product of the dequantized weight: quantizing x adds an error of about
// 1/254 of each block's absmax per value (bench-weight-matmul prints it). Why it is worth it: on
// the Zen 5 machine it runs 3.5-5.6 times as fast as dequantizing W into panels for sgemm
// (figures in q8_product.cpp), and it is the arithmetic llama.cpp uses for every q8_0 product.
// bitsandbytes' 8-bit layers likewise quantize activations in the forward pass.
#pragma once

#include "tensor/weight.h"

#include <cstdint>

namespace paft {

// y[M, W.rows] (row stride ldy) = q8(x)[M, W.cols] (row stride ldx) · Wᵀ + beta · y; W is Q8_0
// (throws std::invalid_argument otherwise). Work is split by W's rows alone: bit-identical for
// any thread count.
void q8_product(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy, int64_t M);

// The same operations written one output at a time, single-threaded (tests compare against it).
void q8_product_reference(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy,
                          int64_t M);

// Whether this build runs the AVX-512 VNNI kernel (else the portable loop).
bool q8_product_is_vectorized();

}  // namespace paft
