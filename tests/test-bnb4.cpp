// bitsandbytes' 4-bit weights (src/tensor/bnb4.cpp): NF4 and FP4 with blocksize 64, optionally
// double-quantized. Against the PyTorch reference (tools/reference/bnb4_ref.py), bit for bit: the
// code tables and the dynamic map, and for every case the packed codes, the absmax data and the
// dequantized values, both of our quantization and of the reference's stored codes. Without the
// reference: tables by hand, code values that must come back exactly, the round-trip error bound,
// determinism over thread counts, row and value ranges against the full dequantization, zero
// blocks, and the errors.
#include "io/fs.h"
#include "io/safetensors.h"
#include "tensor/weight.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

// The expectations computed here round each product and sum on its own, as the format does.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

using namespace paft;

namespace {

const std::string kDir = std::string(PAFT_TESTDATA) + "/bnb4";

constexpr WeightType kTypes[] = {WeightType::NF4, WeightType::FP4};

// The reference's cases.json and cases.safetensors.
struct Reference {
    nlohmann::json cases = nlohmann::json::parse(read_file(kDir + "/cases.json"));
    TensorStore    store = TensorStore::open_file(kDir + "/cases.safetensors");

    template <class T> std::vector<T> get(const std::string & name) const {
        const auto         bytes = store.bytes(name);
        std::vector<T>     out(bytes.size() / sizeof(T));
        std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
        return out;
    }
};

const Reference & reference() {
    static const Reference r;
    return r;
}

// A float with its bits, for messages: "0.5 (0x3f000000)".
std::string bits(float v) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", std::bit_cast<uint32_t>(v));
    return ::testing::PrintToString(v) + " (0x" + hex + ")";
}

// Whether got[0..want.size()) equals want bit for bit (so -0 differs from 0 and NaN from
// everything); the message counts the differences and shows the first.
::testing::AssertionResult same_bits(const float * got, const std::vector<float> & want) {
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i])) {
            first = differ++ == 0 ? i : first;
        }
    }
    if (differ == 0) {
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << differ << " of " << want.size() << " floats differ; first at " << first
                                         << ": " << bits(got[first]) << " instead of " << bits(want[first]);
}

::testing::AssertionResult same_bytes(const uint8_t * got, const std::vector<uint8_t> & want) {
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (got[i] != want[i]) {
            first = differ++ == 0 ? i : first;
        }
    }
    if (differ == 0) {
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << differ << " of " << want.size() << " bytes differ; first at " << first
                                         << ": " << int(got[first]) << " instead of " << int(want[first]);
}

std::vector<float> dequantize_all(const Weight & w) {
    std::vector<float> out(static_cast<size_t>(w.numel()), -12345.0f);
    dequantize_weight_rows(w, 0, w.rows, out.data());
    return out;
}

// N(0, scale^2) values rounded to bfloat16 precision (half away from zero, which is enough
// here), as model weights are.
std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 0.02f) {
    std::mt19937                    gen(seed);
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float>              x(n);
    for (float & v : x) {
        v = std::bit_cast<float>((std::bit_cast<uint32_t>(normal(gen)) + 0x8000u) & 0xFFFF0000u);
    }
    return x;
}

float true_absmax(const std::vector<float> & x, int64_t b) {
    float a = 0.0f;
    for (int64_t i = b * kBnb4Block; i < std::min<int64_t>((b + 1) * kBnb4Block, (int64_t) x.size()); i++) {
        a = std::max(a, std::fabs(x[i]));
    }
    return a;
}

const float * table_of(WeightType t) { return t == WeightType::NF4 ? kNF4Values : kFP4Values; }

// Half the widest gap between adjacent code values: no value of [-1, 1] is farther than this
// from its nearest code value.
double half_widest_gap(WeightType t) {
    std::vector<double> v(table_of(t), table_of(t) + 16);
    std::sort(v.begin(), v.end());
    double gap = 0;
    for (size_t i = 1; i < v.size(); i++) {
        gap = std::max(gap, v[i] - v[i - 1]);
    }
    return gap / 2;
}

// ---- the reference ----

TEST(Bnb4Reference, Tables) {
    const Reference & r = reference();
    EXPECT_TRUE(same_bits(kNF4Values, r.get<float>("tables.nf4")));
    EXPECT_TRUE(same_bits(kFP4Values, r.get<float>("tables.fp4")));
    EXPECT_TRUE(same_bits(bnb_dynamic_map(), r.get<float>("tables.dynamic_map")));
}

// Our quantization of each case's input: codes, absmax data and dequantized values exactly.
TEST(Bnb4Reference, QuantizeAndDequantize) {
    const Reference & r = reference();
    ASSERT_GE(r.cases.size(), 40u);
    for (const auto & c : r.cases) {
        const std::string name = c["name"].get<std::string>();
        SCOPED_TRACE(name);
        const int64_t      rows = c["rows"].get<int64_t>(), cols = c["cols"].get<int64_t>();
        const WeightType   type = c["type"].get<std::string>() == "nf4" ? WeightType::NF4 : WeightType::FP4;
        const bool         dq   = c["double_quant"].get<bool>();
        std::vector<float> x    = r.get<float>(c["input"].get<std::string>() + ".input");
        ASSERT_EQ((int64_t) x.size(), rows * cols);

        const Bnb4Weight q = quantize_bnb4(x.data(), rows, cols, type, dq);
        EXPECT_TRUE(same_bytes(q.codes.data(), r.get<uint8_t>(name + ".codes")));
        ASSERT_EQ(q.codes.size(), r.get<uint8_t>(name + ".codes").size());
        if (dq) {
            ASSERT_EQ(q.weight.absmax, nullptr);
            ASSERT_EQ(q.absmax_q.size(), r.get<uint8_t>(name + ".absmax_q").size());
            ASSERT_EQ(q.absmax_scale.size(), r.get<float>(name + ".absmax_scale").size());
            EXPECT_TRUE(same_bytes(q.absmax_q.data(), r.get<uint8_t>(name + ".absmax_q")));
            EXPECT_TRUE(same_bits(q.absmax_scale.data(), r.get<float>(name + ".absmax_scale")));
            EXPECT_TRUE(same_bits(&q.weight.absmax_offset, r.get<float>(name + ".absmax_offset")));
        } else {
            ASSERT_EQ(q.absmax.size(), r.get<float>(name + ".absmax").size());
            EXPECT_TRUE(same_bits(q.absmax.data(), r.get<float>(name + ".absmax")));
        }
        EXPECT_TRUE(same_bits(dequantize_all(q.weight).data(), r.get<float>(name + ".dequant")));
    }
}

// Dequantization of the reference's own codes and absmax data (independent of our quantizer).
TEST(Bnb4Reference, DequantizeReferenceData) {
    const Reference & r = reference();
    for (const auto & c : r.cases) {
        const std::string name = c["name"].get<std::string>();
        SCOPED_TRACE(name);
        const auto codes = r.get<uint8_t>(name + ".codes");
        Weight     w;
        w.type = c["type"].get<std::string>() == "nf4" ? WeightType::NF4 : WeightType::FP4;
        w.rows = c["rows"].get<int64_t>();
        w.cols = c["cols"].get<int64_t>();
        w.data = codes.data();
        std::vector<float>   absmax, scale;
        std::vector<uint8_t> absmax_q;
        if (c["double_quant"].get<bool>()) {
            absmax_q         = r.get<uint8_t>(name + ".absmax_q");
            scale            = r.get<float>(name + ".absmax_scale");
            w.absmax_q       = absmax_q.data();
            w.absmax_scale   = scale.data();
            w.absmax_offset  = r.get<float>(name + ".absmax_offset").at(0);
            // bnb4_absmax decodes as dequantize_blockwise then `+ offset`: two roundings.
            std::vector<float> decoded(static_cast<size_t>(w.blocks())), want(decoded.size());
            bnb4_absmax(w, 0, w.blocks(), decoded.data());
            for (size_t b = 0; b < want.size(); b++) {
                const float product = bnb_dynamic_map()[absmax_q[b]] * scale[b / kBnb4AbsmaxBlock];
                want[b]             = product + w.absmax_offset;
            }
            EXPECT_TRUE(same_bits(decoded.data(), want));
        } else {
            absmax   = r.get<float>(name + ".absmax");
            w.absmax = absmax.data();
        }
        EXPECT_TRUE(same_bits(dequantize_all(w).data(), r.get<float>(name + ".dequant")));
    }
}

// ---- without the reference ----

TEST(Bnb4Tables, ByHand) {
    // FP4: (0, 0.0625, 8, 12, 4, 6, 2, 3) / 12 by code, the sign in bit 3; code 8 is -0.
    const double fp4[8] = {0, 0.0625, 8, 12, 4, 6, 2, 3};
    for (int c = 0; c < 16; c++) {
        const float want = static_cast<float>((c & 8 ? -fp4[c & 7] : fp4[c & 7]) / 12.0);
        EXPECT_EQ(std::bit_cast<uint32_t>(kFP4Values[c]), std::bit_cast<uint32_t>(want)) << c;
    }
    EXPECT_TRUE(std::signbit(kFP4Values[8]));
    // NF4: increasing from -1 to 1 with an exact zero at code 7.
    EXPECT_EQ(kNF4Values[0], -1.0f);
    EXPECT_EQ(kNF4Values[7], 0.0f);
    EXPECT_EQ(kNF4Values[15], 1.0f);
    for (int c = 1; c < 16; c++) {
        EXPECT_LT(kNF4Values[c - 1], kNF4Values[c]) << c;
    }
    // The dynamic map: strictly increasing, 127 negatives mirroring the positives, 0 at 127, 1
    // at 255; its smallest positive is 1e-6 * mean(0.1, 1) and its largest below 1 is the mean
    // of the last two points of linspace(0.1, 1, 65) (1 - 0.9/64 and 1).
    const float * map = bnb_dynamic_map();
    for (int i = 1; i < 256; i++) {
        EXPECT_LT(map[i - 1], map[i]) << i;
    }
    for (int i = 0; i < 127; i++) {
        EXPECT_EQ(map[i], -map[254 - i]) << i;
    }
    EXPECT_EQ(map[127], 0.0f);
    EXPECT_EQ(map[255], 1.0f);
    EXPECT_EQ(map[128], static_cast<float>(1e-6) * ((static_cast<float>(0.1) + 1.0f) / 2.0f));
    const float last_step = (1.0f - static_cast<float>(0.1)) / 64.0f;
    EXPECT_EQ(map[254], ((1.0f - last_step) + 1.0f) / 2.0f);
    EXPECT_EQ(bnb_dynamic_map(), map);  // built once
}

// Values that are code values times a power-of-two absmax come back exactly, with their codes.
TEST(Bnb4, CodeValuesRoundTripExactly) {
    for (WeightType type : kTypes) {
        const float * table = table_of(type);
        for (float scale : {1.0f, 0.03125f, 64.0f}) {
            std::vector<float> x;
            for (int rep = 0; rep < 4; rep++) {  // one block: 4 x 16 values with absmax = scale
                for (int c = 0; c < 16; c++) {
                    x.push_back(table[c] * scale);
                }
            }
            const Bnb4Weight q = quantize_bnb4(x.data(), 1, 64, type, false);
            ASSERT_EQ(q.absmax.at(0), scale);
            for (int i = 0; i < 64; i++) {
                const int code = i % 2 == 0 ? q.codes[i / 2] >> 4 : q.codes[i / 2] & 15;
                // FP4's +0 and -0 quantize to code 0 (the sign bit tests x < 0).
                const int want = type == WeightType::FP4 && i % 16 == 8 ? 0 : i % 16;
                EXPECT_EQ(code, want) << weight_type_name(type) << " scale " << scale << " value " << i;
            }
            const auto back = dequantize_all(q.weight);
            for (int i = 0; i < 64; i++) {
                EXPECT_EQ(back[i], x[i]) << weight_type_name(type) << " value " << i;
            }
        }
    }
}

// Every dequantized value is within half the widest gap of the table times its block's absmax
// (plus, double-quantized, the error of the decoded absmax itself, which scales code values of
// magnitude at most 1).
TEST(Bnb4, RoundTripErrorBound) {
    struct Shape {
        int64_t rows, cols;
    };
    for (Shape s : {Shape{16, 64}, Shape{7, 100}, Shape{33, 300}, Shape{1, 1}, Shape{3, 5}}) {
        const std::vector<float> x = gaussian(static_cast<size_t>(s.rows * s.cols), 7 + s.cols);
        for (WeightType type : kTypes) {
            for (bool dq : {false, true}) {
                SCOPED_TRACE(std::string(weight_type_name(type)) + (dq ? " dq " : " ") + std::to_string(s.rows) + "x" +
                             std::to_string(s.cols));
                const Bnb4Weight   q   = quantize_bnb4(x.data(), s.rows, s.cols, type, dq);
                const auto         y   = dequantize_all(q.weight);
                std::vector<float> dec(static_cast<size_t>(q.weight.blocks()));
                bnb4_absmax(q.weight, 0, q.weight.blocks(), dec.data());
                for (int64_t b = 0; b < q.weight.blocks(); b++) {
                    const double a = true_absmax(x, b);
                    if (!dq) {
                        ASSERT_EQ(dec[b], a) << "block " << b;  // plain absmax is max |x| exactly
                    }
                    const double bound = half_widest_gap(type) * a + std::fabs(dec[b] - a) + 4e-7 * a;
                    for (int64_t i = b * kBnb4Block; i < std::min<int64_t>((b + 1) * kBnb4Block, (int64_t) x.size()); i++) {
                        ASSERT_LE(std::fabs((double) y[i] - x[i]), bound) << "value " << i;
                    }
                }
            }
        }
    }
}

// The same bytes every time, whatever the number of threads.
TEST(Bnb4, DeterministicOverThreads) {
    const int64_t      rows = 41, cols = 777;  // 498 blocks: two absmax scales
    std::vector<float> x    = gaussian(static_cast<size_t>(rows * cols), 99);
    for (WeightType type : kTypes) {
        for (bool dq : {false, true}) {
            const int        threads = omp_get_max_threads();
            omp_set_num_threads(1);
            const Bnb4Weight one = quantize_bnb4(x.data(), rows, cols, type, dq);
            omp_set_num_threads(std::max(threads, 3));
            const Bnb4Weight many  = quantize_bnb4(x.data(), rows, cols, type, dq);
            const Bnb4Weight again = quantize_bnb4(x.data(), rows, cols, type, dq);
            omp_set_num_threads(threads);
            for (const Bnb4Weight * other : {&many, &again}) {
                EXPECT_EQ(one.codes, other->codes);
                EXPECT_EQ(one.absmax_q, other->absmax_q);
                EXPECT_TRUE(same_bits(one.absmax.data(), other->absmax));
                EXPECT_TRUE(same_bits(one.absmax_scale.data(), other->absmax_scale));
                EXPECT_EQ(std::bit_cast<uint32_t>(one.weight.absmax_offset),
                          std::bit_cast<uint32_t>(other->weight.absmax_offset));
                EXPECT_TRUE(same_bits(dequantize_all(one.weight).data(), dequantize_all(other->weight)));
            }
        }
    }
}

// Rows [row0, row0 + n) and arbitrary value ranges equal the slice of the full dequantization,
// with rows that start mid-block and on a low nibble.
TEST(Bnb4, RangesEqualSlicesOfTheWhole) {
    struct Shape {
        int64_t rows, cols;
    };
    for (Shape s : {Shape{7, 100}, Shape{9, 13}, Shape{5, 64}, Shape{3, 257}}) {
        const std::vector<float> x = gaussian(static_cast<size_t>(s.rows * s.cols), 3 + s.rows);
        for (WeightType type : kTypes) {
            for (bool dq : {false, true}) {
                SCOPED_TRACE(std::string(weight_type_name(type)) + (dq ? " dq " : " ") + std::to_string(s.rows) + "x" +
                             std::to_string(s.cols));
                const Bnb4Weight q    = quantize_bnb4(x.data(), s.rows, s.cols, type, dq);
                const auto       full = dequantize_all(q.weight);
                for (int64_t row0 = 0; row0 < s.rows; row0++) {
                    for (int64_t n = 1; row0 + n <= s.rows; n++) {
                        std::vector<float> part(static_cast<size_t>(n * s.cols), -1.0f);
                        dequantize_weight_rows(q.weight, row0, n, part.data());
                        const std::vector<float> want(full.begin() + row0 * s.cols, full.begin() + (row0 + n) * s.cols);
                        ASSERT_TRUE(same_bits(part.data(), want)) << "rows " << row0 << "+" << n;
                    }
                }
                const int64_t total = s.rows * s.cols;
                for (int64_t first : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{65}, total / 2, total - 1}) {
                    for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{63}, int64_t{130}, total}) {
                        count = std::min(count, total - first);
                        std::vector<float> part(static_cast<size_t>(count) + 1, -1.0f);
                        bnb4_dequantize(q.weight, first, count, part.data());
                        const std::vector<float> want(full.begin() + first, full.begin() + first + count);
                        ASSERT_TRUE(same_bits(part.data(), want)) << "values " << first << "+" << count;
                        ASSERT_EQ(part[count], -1.0f) << "wrote past the range";
                    }
                }
                std::vector<float> absmax(static_cast<size_t>(q.weight.blocks()));
                bnb4_absmax(q.weight, 0, q.weight.blocks(), absmax.data());
                for (int64_t b0 = 0; b0 < q.weight.blocks(); b0++) {
                    float one = 0;
                    bnb4_absmax(q.weight, b0, 1, &one);
                    ASSERT_EQ(std::bit_cast<uint32_t>(one), std::bit_cast<uint32_t>(absmax[b0]));
                }
            }
        }
    }
}

// A block of zeros (either sign) has absmax 0: bitsandbytes' kernel normalizes by 0 * (1/0) =
// NaN, which every decision test rejects, so its codes are 0 (NF4's -1, FP4's +0); dequantized
// they are zeros, never NaN. All-zero weights double-quantized decode to zero absmax too.
TEST(Bnb4, ZeroBlocks) {
    std::vector<float> x = gaussian(4 * 96, 5);
    std::fill(x.begin() + 64, x.begin() + 128, 0.0f);
    std::fill(x.begin() + 256, x.begin() + 320, -0.0f);
    for (WeightType type : kTypes) {
        for (bool dq : {false, true}) {
            SCOPED_TRACE(std::string(weight_type_name(type)) + (dq ? " dq" : ""));
            const Bnb4Weight q = quantize_bnb4(x.data(), 4, 96, type, dq);
            const auto       y = dequantize_all(q.weight);
            for (int64_t b : {1, 4}) {
                for (int64_t i = b * 64; i < (b + 1) * 64; i++) {
                    ASSERT_EQ(q.codes[i / 2], 0) << i;
                    if (!dq) {
                        ASSERT_EQ(y[i], 0.0f) << i;
                    }
                }
            }
            for (float v : y) {
                ASSERT_TRUE(std::isfinite(v));
            }
            if (!dq) {
                EXPECT_EQ(q.absmax[1], 0.0f);
                EXPECT_EQ(q.absmax[4], 0.0f);
            }
        }
    }
    const std::vector<float> zeros(3 * 64, 0.0f);
    for (WeightType type : kTypes) {
        for (bool dq : {false, true}) {
            const Bnb4Weight q = quantize_bnb4(zeros.data(), 3, 64, type, dq);
            for (float v : dequantize_all(q.weight)) {
                ASSERT_EQ(v, 0.0f) << weight_type_name(type) << (dq ? " dq" : "");
            }
            std::vector<float> absmax(3);
            bnb4_absmax(q.weight, 0, 3, absmax.data());
            EXPECT_EQ(absmax, std::vector<float>(3, 0.0f));
        }
    }
}

// The double quantization's offset is the mean of the absmax values taken in double and rounded
// once to f32: here a float32 running sum would drop the 299 small values entirely.
TEST(Bnb4, OffsetIsTheMeanRoundedOnce) {
    std::vector<float> x(300 * 64, 0.0f);
    x[3] = -1.0f;
    for (int b = 1; b < 300; b++) {
        x[b * 64 + 5] = 3.0f * std::ldexp(1.0f, -30);
    }
    const float want = static_cast<float>((1.0 + 299 * 3 * std::ldexp(1.0, -30)) / 300.0);
    ASSERT_NE(want, 1.0f / 300.0f);
    for (WeightType type : kTypes) {
        const Bnb4Weight q = quantize_bnb4(x.data(), 300, 64, type, true);
        EXPECT_EQ(std::bit_cast<uint32_t>(q.weight.absmax_offset), std::bit_cast<uint32_t>(want));
    }
}

// The layout's sizes, and a moved weight still pointing at its own storage.
TEST(Bnb4, LayoutAndMove) {
    const std::vector<float> x = gaussian(5 * 13, 11);  // 65 values: 2 blocks, 33 bytes
    for (bool dq : {false, true}) {
        Bnb4Weight q = quantize_bnb4(x.data(), 5, 13, WeightType::NF4, dq);
        EXPECT_EQ(q.weight.blocks(), 2);
        EXPECT_EQ(q.codes.size(), 33u);
        EXPECT_EQ(q.codes[32] & 15, 7);  // the zero the kernel pads the last block with: NF4's 0
        EXPECT_EQ(q.weight.bytes(), dq ? 33u + 2u + 4u : 33u + 8u);
        const auto       before = dequantize_all(q.weight);
        const Bnb4Weight moved  = std::move(q);
        EXPECT_EQ(moved.weight.data, moved.codes.data());
        EXPECT_TRUE(same_bits(dequantize_all(moved.weight).data(), before));
    }
    const Bnb4Weight empty = quantize_bnb4(nullptr, 0, 64, WeightType::FP4, true);
    EXPECT_EQ(empty.weight.blocks(), 0);
    EXPECT_TRUE(dequantize_all(empty.weight).empty());
}

TEST(Bnb4, Errors) {
    const std::vector<float> x = gaussian(128, 1);
    EXPECT_THROW(quantize_bnb4(x.data(), 2, 64, WeightType::Q8_0, false), std::invalid_argument);
    EXPECT_THROW(quantize_bnb4(x.data(), -1, 64, WeightType::NF4, false), std::invalid_argument);
    const Bnb4Weight q = quantize_bnb4(x.data(), 2, 64, WeightType::NF4, false);
    std::vector<float> out(256);
    EXPECT_THROW(bnb4_dequantize(q.weight, 100, 29, out.data()), std::out_of_range);
    EXPECT_THROW(bnb4_dequantize(q.weight, -1, 2, out.data()), std::out_of_range);
    EXPECT_THROW(bnb4_absmax(q.weight, 1, 2, out.data()), std::out_of_range);
    EXPECT_THROW(dequantize_weight_rows(q.weight, 1, 2, out.data()), std::out_of_range);
    Weight f32 = q.weight;
    f32.type   = WeightType::F32;
    EXPECT_THROW(bnb4_dequantize(f32, 0, 1, out.data()), std::invalid_argument);
}

}  // namespace
