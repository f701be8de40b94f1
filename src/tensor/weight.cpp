#include "tensor/weight.h"

#include "tensor/half.h"
#include "tensor/quants.h"

#include <cstring>
#include <stdexcept>

namespace paft {

const char * weight_type_name(WeightType type) {
    switch (type) {
    case WeightType::F32: return "f32";
    case WeightType::BF16: return "bf16";
    case WeightType::F16: return "f16";
    case WeightType::Q8_0: return "q8_0";
    case WeightType::NF4: return "nf4";
    case WeightType::FP4: return "fp4";
    }
    return "?";
}

size_t Weight::bytes() const {
    const size_t n = (size_t) numel();
    switch (type) {
    case WeightType::F32: return n * 4;
    case WeightType::BF16:
    case WeightType::F16: return n * 2;
    case WeightType::Q8_0: return (size_t) rows * ggml_row_bytes(GgmlType::Q8_0, cols);
    case WeightType::NF4:
    case WeightType::FP4: {
        const size_t b = (size_t) blocks();
        size_t       scales = absmax_q ? b + 4 * ((b + kBnb4AbsmaxBlock - 1) / kBnb4AbsmaxBlock) : 4 * b;
        return (n + 1) / 2 + scales;
    }
    }
    return 0;
}

void dequantize_weight_rows(const Weight & w, int64_t row0, int64_t n, float * dst) {
    if (row0 < 0 || n < 0 || row0 + n > w.rows) {
        throw std::out_of_range("dequantize_weight_rows: rows outside the weight");
    }
    const size_t first = (size_t) row0 * (size_t) w.cols, count = (size_t) n * (size_t) w.cols;
    switch (w.type) {
    case WeightType::F32: std::memcpy(dst, w.f32() + first, count * sizeof(float)); return;
    case WeightType::BF16: {
        const uint16_t * src = static_cast<const uint16_t *>(w.data) + first;
        for (size_t i = 0; i < count; i++) dst[i] = bf16_to_f32(src[i]);
        return;
    }
    case WeightType::F16: {
        const uint16_t * src = static_cast<const uint16_t *>(w.data) + first;
        for (size_t i = 0; i < count; i++) dst[i] = f16_to_f32(src[i]);
        return;
    }
    case WeightType::Q8_0: {
        const size_t row_bytes = ggml_row_bytes(GgmlType::Q8_0, w.cols);
        dequantize_rows(GgmlType::Q8_0, static_cast<const uint8_t *>(w.data) + (size_t) row0 * row_bytes, n, w.cols,
                        dst);
        return;
    }
    case WeightType::NF4:
    case WeightType::FP4: bnb4_dequantize(w, (int64_t) first, (int64_t) count, dst); return;
    }
}

Q8Weight quantize_q8_0(const float * src, int64_t rows, int64_t cols) {
    if (cols % kQ8Block != 0) {
        throw std::invalid_argument("quantize_q8_0: the row length is not a multiple of 32");
    }
    Q8Weight q;
    q.blocks.resize((size_t) rows * ggml_row_bytes(GgmlType::Q8_0, cols));
    quantize_rows(GgmlType::Q8_0, src, rows, cols, q.blocks.data());
    q.weight = Weight{WeightType::Q8_0, rows, cols, q.blocks.data()};
    return q;
}

}  // namespace paft
