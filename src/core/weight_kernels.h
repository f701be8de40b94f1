// Matrix products with a typed weight (tensor/weight.h) as the right operand, read in its own type:
// the CPU backend's matmul_weight and matmul_weight_backward. No call converts the whole weight
// to f32.
//
// Two ways, by the number M of activation rows:
//   few rows (M <= kWeightFewRows: decoding a batch of sequences)  dot products that read
//       BF16/F16/Q8_0/NF4/FP4 directly, 16 values at a time decoded in registers to exactly the
//       f32 values dequantize_weight_rows gives, then fused multiply-adds. Each thread takes a
//       contiguous range of W's rows and reads each of them from memory once for all M rows of x,
//       so the product streams the weight at memory speed.
//   many rows (training, prefill, scoring)  panels of W's rows dequantized into a reused per-thread
//       f32 buffer, each multiplied by a single-threaded cblas_sgemm; the backward decodes blocks
//       of the same kind (rows x a slice of columns) and accumulates dx slice by slice.
// F32 weights take the same two ways with W's own rows as the panels (no copy), so both functions
// take every type.
// Q8_0 with many rows is the exception: weight_matmul hands it to q8_product (core/q8_product.h),
// which quantizes x's rows to q8_0 blocks as llama.cpp does and multiplies int8 by int8 (several
// times faster than its panels here). The backward always takes the panels, with f32 dy: as in
// bitsandbytes' 8-bit layers, only the forward product quantizes its activations.
//
// Results: every output value is computed by one thread in a fixed order, by work split
// according to the shapes alone, so they are bit-identical for any thread count (OpenBLAS's
// threaded sgemm is not, which is why no call here runs it threaded). Both ways compute with the
// weight's exact f32 values and differ from the f32 product of the dequantized matrix only in the
// order of the additions.
#pragma once

#include "tensor/weight.h"

#include <cstdint>

namespace paft {

// The most activation rows the direct dot-product kernels take; above it, panels and sgemm
// (weight_kernels.cpp has the measurements behind it).
extern const int64_t kWeightFewRows;

// y[M, W.rows] (row stride ldy) = x[M, W.cols] (row stride ldx) · Wᵀ + beta · y  (beta 0: y is not
// read, so NaN or garbage there does not matter).
void weight_matmul(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy, int64_t M);

// dx[M, W.cols] (row stride lddx) += dy[M, W.rows] (row stride lddy) · W
void weight_matmul_backward(float * dx, int64_t lddx, const float * dy, int64_t lddy, const Weight & W, int64_t M);

// The two ways of weight_matmul on their own, whatever M (for the benchmark and the tests).
void weight_matmul_few_rows(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy,
                            int64_t M);
void weight_matmul_panels(const float * x, int64_t ldx, const Weight & W, float beta, float * y, int64_t ldy,
                          int64_t M);

}  // namespace paft
