// ggml block quantization (src/gguf/quants.*): the type table and sizes; blocks whose bytes are
// worked out by hand, which pin llama.cpp's layouts (Q8_0, Q4_0, Q5_0 quantized; Q4_K, Q6_K built
// byte by byte and dequantized); random bytes decoded by the test's own reading of the header's
// formulas; error bounds and RMS error on random data; round trips; zero, constant and
// non-finite blocks. Every expected value comes from hand calculation, the header's formulas
// coded here independently, or a bound argued in a comment, never from the code under test.
#include "tensor/quants.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace paft;

namespace {

using Bytes = std::vector<uint8_t>;

constexpr GgmlType kQuantTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K};

Bytes quantize(GgmlType t, const std::vector<float> & x, int64_t rows, int64_t n) {
    Bytes out(ggml_row_bytes(t, n) * static_cast<size_t>(rows), 0xCD);
    quantize_rows(t, x.data(), rows, n, out.data());
    return out;
}

std::vector<float> dequantize(GgmlType t, const Bytes & b, int64_t rows, int64_t n) {
    std::vector<float> out(static_cast<size_t>(rows * n), -1234.5f);
    dequantize_rows(t, b.data(), rows, n, out.data());
    return out;
}

// An IEEE half's value, decoded here independently of the library: m x 2^-24 for subnormals,
// (1024 + m) x 2^(e-25) for normals (finite halves only).
double half(uint16_t h) {
    const int    e = (h >> 10) & 31, m = h & 1023;
    const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

double half_at(const uint8_t * p) { return half(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// ---- The test's own decoders, written from quants.h's layout comments ----

// The quant q of value i (0..255) of a Q4_K super-block: 64 values per 32 bytes of qs, the
// first 32 of them in the low nibbles.
int q4k_quant(const uint8_t * block, int i) {
    const uint8_t byte = block[16 + 32 * (i / 64) + i % 32];
    return (i % 64) < 32 ? (byte & 15) : (byte >> 4);
}

// Sub-block j's 6-bit scale and min, from the 12 packed bytes.
void q4k_scale_min(const uint8_t * block, int j, int & sc, int & m) {
    const uint8_t * s = block + 4;
    if (j < 4) {
        sc = s[j] % 64;
        m  = s[j + 4] % 64;
    } else {
        sc = (s[j + 4] % 16) + 16 * (s[j - 4] / 64);
        m  = (s[j + 4] / 16) + 16 * (s[j] / 64);
    }
}

// The quant q (0..63) of value i of a Q6_K super-block: in each half of 128 (ql 64 bytes, qh 32
// bytes), quarter k's value l: ql[l + 32*(k%2)] (low nibble for k < 2, high for k >= 2), and
// bits 2k, 2k+1 of qh[l] on top.
int q6k_quant(const uint8_t * block, int i) {
    const int     h = i / 128, k = (i % 128) / 32, l = i % 32;
    const uint8_t lo = block[64 * h + l + 32 * (k % 2)];
    const uint8_t hi = block[128 + 32 * h + l];
    return (k < 2 ? lo % 16 : lo / 16) + 16 * ((hi >> (2 * k)) & 3);
}

int q6k_scale(const uint8_t * block, int i) { return static_cast<int8_t>(block[192 + i / 16]); }

// The values of `blocks` blocks as the header's formulas give them. The products are exact in
// double (a half has 11 significant bits, the integers at most 8), so rounding the double to
// float gives the correctly rounded result, as one float operation would.
std::vector<float> ref_decode(GgmlType t, const uint8_t * bytes, size_t blocks) {
    std::vector<float> out;
    const size_t       bb = ggml_block_bytes(t);
    for (size_t b = 0; b < blocks; ++b) {
        const uint8_t * p = bytes + b * bb;
        switch (t) {
            case GgmlType::Q8_0:
                for (int i = 0; i < 32; ++i) out.push_back(static_cast<float>(half_at(p) * static_cast<int8_t>(p[2 + i])));
                break;
            case GgmlType::Q4_0:
                for (int i = 0; i < 32; ++i) {
                    const int q = i < 16 ? p[2 + i] % 16 : p[2 + i - 16] / 16;
                    out.push_back(static_cast<float>(half_at(p) * (q - 8)));
                }
                break;
            case GgmlType::Q5_0:
                for (int i = 0; i < 32; ++i) {
                    const int q  = i < 16 ? p[6 + i] % 16 : p[6 + i - 16] / 16;
                    const int hb = (p[2 + i / 8] >> (i % 8)) & 1;  // bit i of the little-endian u32
                    out.push_back(static_cast<float>(half_at(p) * (q + 16 * hb - 16)));
                }
                break;
            case GgmlType::Q4_K:
                for (int i = 0; i < 256; ++i) {
                    int sc, m;
                    q4k_scale_min(p, i / 32, sc, m);
                    out.push_back(static_cast<float>(half_at(p) * sc * q4k_quant(p, i) - half_at(p + 2) * m));
                }
                break;
            case GgmlType::Q6_K:
                for (int i = 0; i < 256; ++i)
                    out.push_back(static_cast<float>(half_at(p + 208) * q6k_scale(p, i) * (q6k_quant(p, i) - 32)));
                break;
            default: ADD_FAILURE() << "no reference decoder";
        }
    }
    return out;
}

// Value i's grid in a K-quant super-block: levels offset + step*k for k in lo..hi.
struct Grid {
    double step, offset;
    int    lo, hi;
};

Grid k_grid(GgmlType t, const uint8_t * block, int i) {
    if (t == GgmlType::Q4_K) {
        int sc, m;
        q4k_scale_min(block, i / 32, sc, m);
        return {half_at(block) * sc, -half_at(block + 2) * m, 0, 15};
    }
    return {half_at(block + 208) * q6k_scale(block, i), 0, -32, 31};
}

double nearest_level_distance(const Grid & g, double x) {
    double best = std::numeric_limits<double>::infinity();
    for (int k = g.lo; k <= g.hi; ++k) best = std::min(best, std::fabs(x - (g.offset + g.step * k)));
    return best;
}

// ---- Random data ----

enum class Dist { Gaussian, Uniform, Outliers, Offset };

const char * dist_name(Dist d) {
    switch (d) {
        case Dist::Gaussian: return "gaussian";
        case Dist::Uniform: return "uniform";
        case Dist::Outliers: return "outliers";
        case Dist::Offset: return "offset";
    }
    return "?";
}

// Gaussian N(0, sigma); uniform on [-sigma*sqrt(3), sigma*sqrt(3)] (the same RMS); Gaussian
// with about one value in 64 multiplied by 30 (a heavy tail, as some weight matrices have); or
// N(2.5 sigma, sigma), mostly positive, so that many Q4_K sub-blocks have no negative value.
std::vector<float> make_data(Dist dist, uint32_t seed, size_t count, float sigma) {
    std::mt19937                          rng(seed);
    std::normal_distribution<float>       gauss(0, sigma);
    std::uniform_real_distribution<float> unif(-sigma * std::sqrt(3.0f), sigma * std::sqrt(3.0f));
    std::uniform_int_distribution<int>    pick(0, 63);
    std::vector<float>                    x(count);
    for (float & v : x) {
        if (dist == Dist::Uniform) v = unif(rng);
        else if (dist == Dist::Offset) v = gauss(rng) + 2.5f * sigma;
        else v = gauss(rng) * (dist == Dist::Outliers && pick(rng) == 0 ? 30.0f : 1.0f);
    }
    return x;
}

double rms(const std::vector<float> & a, const std::vector<float> & b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    return std::sqrt(s / static_cast<double>(a.size()));
}

double rms(const std::vector<float> & a) { return rms(a, std::vector<float>(a.size(), 0.0f)); }

// Plain grids with exact (unrounded) scales, computed here as quality references for the
// K-quants: Q4_K-like, each 32 values on 16 levels from min(0, min x) to max x; Q6_K-like, each
// 16 values on s*q, q in -32..31, with s = (largest-magnitude value) / -32. Returns the squared error.
double plain_grid_sse(GgmlType t, const std::vector<float> & x) {
    double     sse = 0;
    const int  sub = t == GgmlType::Q4_K ? 32 : 16;
    for (size_t b = 0; b < x.size(); b += sub) {
        const float * s = x.data() + b;
        if (t == GgmlType::Q4_K) {
            double lo = 0, hi = s[0];
            for (int i = 0; i < sub; ++i) {
                lo = std::min(lo, static_cast<double>(s[i]));
                hi = std::max(hi, static_cast<double>(s[i]));
            }
            const double step = (hi - lo) / 15;
            for (int i = 0; i < sub; ++i) {
                const double q = step > 0 ? std::clamp(std::round((s[i] - lo) / step), 0.0, 15.0) : 0;
                sse += std::pow(lo + step * q - s[i], 2);
            }
        } else {
            double amax = 0, max = 0;
            for (int i = 0; i < sub; ++i)
                if (std::fabs(s[i]) > amax) {
                    amax = std::fabs(s[i]);
                    max  = s[i];
                }
            const double step = max / -32;
            for (int i = 0; i < sub; ++i) {
                const double q = step != 0 ? std::clamp(std::round(s[i] / step), -32.0, 31.0) : 0;
                sse += std::pow(step * q - s[i], 2);
            }
        }
    }
    return sse;
}

// ---- Sizes ----

TEST(Quants, TypeTable) {
    struct Row {
        GgmlType    t;
        uint32_t    id;
        const char * name;
        int64_t     block;
        size_t      bytes;
    };
    const Row rows[] = {
        {GgmlType::F32, 0, "f32", 1, 4},      {GgmlType::F16, 1, "f16", 1, 2},       {GgmlType::Q4_0, 2, "q4_0", 32, 18},
        {GgmlType::Q5_0, 6, "q5_0", 32, 22},  {GgmlType::Q8_0, 8, "q8_0", 32, 34},   {GgmlType::Q4_K, 12, "q4_K", 256, 144},
        {GgmlType::Q6_K, 14, "q6_K", 256, 210}, {GgmlType::BF16, 30, "bf16", 1, 2},
    };
    for (const Row & r : rows) {
        SCOPED_TRACE(r.name);
        EXPECT_EQ(static_cast<uint32_t>(r.t), r.id);
        EXPECT_EQ(ggml_type_from_id(r.id), r.t);
        EXPECT_STREQ(ggml_type_name(r.t), r.name);
        EXPECT_EQ(ggml_block_size(r.t), r.block);
        EXPECT_EQ(ggml_block_bytes(r.t), r.bytes);
        EXPECT_EQ(ggml_is_quantized(r.t), r.block > 1);
        EXPECT_EQ(ggml_row_bytes(r.t, 0), 0u);
        EXPECT_EQ(ggml_row_bytes(r.t, 4096), static_cast<size_t>(4096 / r.block) * r.bytes);
    }
    // Bits per value: 8.5, 4.5, 5.5, 4.5, 6.5625.
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q8_0, 256), 272u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_0, 256), 144u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q5_0, 256), 176u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_K, 512), 288u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::Q6_K, 512), 420u);
    EXPECT_EQ(ggml_row_bytes(GgmlType::F16, 3), 6u);
    for (uint32_t id : {3u, 4u, 5u, 7u, 9u, 10u, 11u, 13u, 15u, 29u, 31u, 1000u}) EXPECT_FALSE(ggml_type_from_id(id)) << id;
}

TEST(Quants, RowsOfPartialBlocksAreRejected) {
    EXPECT_THROW(ggml_row_bytes(GgmlType::Q8_0, 48), std::invalid_argument);
    EXPECT_THROW(ggml_row_bytes(GgmlType::Q4_K, 128), std::invalid_argument);
    std::vector<float> x(128, 1.0f);
    Bytes              b(1024);
    EXPECT_THROW(quantize_rows(GgmlType::Q6_K, x.data(), 1, 128, b.data()), std::invalid_argument);
    EXPECT_THROW(dequantize_rows(GgmlType::Q5_0, b.data(), 1, 40, x.data()), std::invalid_argument);
}

// ---- Hand-worked blocks: Q8_0, Q4_0, Q5_0 ----

TEST(Quants, Q8_0HandBlocks) {
    {
        // amax = 127: d = 1 (half 0x3C00), q = round(x), halves away from zero.
        std::vector<float> x = {0, 1.4f, -2.5f, 2.5f, 126.6f, -127, 0.49f, -0.5f};
        for (int j = 8; j < 32; ++j) x.push_back(static_cast<float>(j - 16));
        Bytes want = {0x00, 0x3C, 0x00, 0x01, 0xFD, 0x03, 0x7F, 0x81, 0x00, 0xFF};
        for (int j = 8; j < 32; ++j) want.push_back(static_cast<uint8_t>(static_cast<int8_t>(j - 16)));
        EXPECT_EQ(quantize(GgmlType::Q8_0, x, 1, 32), want);
        const std::vector<float> got = dequantize(GgmlType::Q8_0, want, 1, 32);
        EXPECT_EQ(got[2], -3.0f);
        EXPECT_EQ(got[4], 127.0f);
        EXPECT_EQ(got[31], 15.0f);
    }
    {
        // amax = 1: d = 1/127 = 0.0078740..., as a half 2^-7 x (1 + 8/1024) = 0.00787353515625
        // (0x2008). q = round(x * 127): 1 -> 127, 0.3 -> 38 (38.1), -0.7 -> -89 (-88.9), and
        // 0.7913 -> 100 (100.495; dividing by the half d instead would give 100.501 -> 101).
        std::vector<float> x(32, 0.0f);
        x[0]  = 1;
        x[5]  = 0.3f;
        x[10] = 0.7913f;
        x[31] = -0.7f;
        Bytes want(34, 0);
        want[0]  = 0x08;
        want[1]  = 0x20;
        want[2]  = 127;
        want[7]  = 38;
        want[12] = 100;
        want[33] = static_cast<uint8_t>(-89);
        EXPECT_EQ(quantize(GgmlType::Q8_0, x, 1, 32), want);
        const std::vector<float> got = dequantize(GgmlType::Q8_0, want, 1, 32);
        EXPECT_EQ(got[0], 0.99993896484375f);    // 127 x 0.00787353515625
        EXPECT_EQ(got[5], 0.2991943359375f);     // 38 x ...
        EXPECT_EQ(got[31], -0.70074462890625f);  // -89 x ...
        EXPECT_EQ(got[1], 0.0f);
    }
}

TEST(Quants, Q4_0HandBlocks) {
    {
        // The largest magnitude is 8, first reached by -8 at j = 3 (+8 at j = 20 comes later), so
        // max = -8, d = max / -8 = 1 (0x3C00), and q = min(15, int(x + 8.5)).
        std::vector<float> x(32, 0.0f);
        const float        first[8] = {0, 7.4f, 0.5f, -8, -0.5f, -0.6f, 1.49f, -7.6f};
        const float        second[5] = {3, -3, 2.5f, -2.5f, 8};
        std::copy(first, first + 8, x.begin());
        std::copy(second, second + 5, x.begin() + 16);
        // q, first half: 8 15 9 0 8 7 9 0, then 8s; second half: 11 5 11 6 15 (16 clamped), then 8s.
        // Byte j = q[j] | q[j+16] << 4.
        const Bytes want = {0x00, 0x3C, 0xB8, 0x5F, 0xB9, 0x60, 0xF8, 0x87, 0x89, 0x80,
                            0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
        EXPECT_EQ(quantize(GgmlType::Q4_0, x, 1, 32), want);
        std::vector<float> back(32, 0.0f);
        const float        back_first[8] = {0, 7, 1, -8, 0, -1, 1, -8};
        const float        back_second[5] = {3, -3, 3, -2, 7};
        std::copy(back_first, back_first + 8, back.begin());
        std::copy(back_second, back_second + 5, back.begin() + 16);
        EXPECT_EQ(dequantize(GgmlType::Q4_0, want, 1, 32), back);
    }
    {
        // A positive max: 4 at j = 0 (the -4 at j = 3 ties and comes later), d = 4 / -8 = -0.5
        // (0xB800), x/d = -2x: 4 -> q 0; -3.5 -> int(15.5) = 15; 1 -> int(6.5) = 6; -4 -> 16,
        // clamped to 15; 0.2 -> int(8.1) = 8; zeros -> 8.
        std::vector<float> x(32, 0.0f);
        x[0] = 4;
        x[1] = -3.5f;
        x[2] = 1;
        x[3] = -4;
        x[4] = 0.2f;
        Bytes want(18, 0x88);
        want[0] = 0x00;
        want[1] = 0xB8;
        want[2] = 0x80;
        want[3] = 0x8F;
        want[4] = 0x86;
        want[5] = 0x8F;
        want[6] = 0x88;
        EXPECT_EQ(quantize(GgmlType::Q4_0, x, 1, 32), want);
        const std::vector<float> got = dequantize(GgmlType::Q4_0, want, 1, 32);  // -0.5 x (q - 8)
        EXPECT_EQ(got[0], 4.0f);
        EXPECT_EQ(got[1], -3.5f);
        EXPECT_EQ(got[2], 1.0f);
        EXPECT_EQ(got[3], -3.5f);
        EXPECT_EQ(got[4], 0.0f);
    }
}

TEST(Quants, Q5_0HandBlock) {
    // max = -16 at j = 0: d = 1 (0x3C00), q = min(31, int(x + 16.5)). First half: -16 -> 0,
    // 15 -> 31, 15.6 -> 31 (32 clamped), 0 -> 16, -1 -> 15, 0.5 -> 17, -0.5 -> 16, -0.6 -> 15,
    // then 0 -> 16; second half x[16+k] = k - 8 -> q = k + 8.
    std::vector<float> x(32, 0.0f);
    const float        first[8] = {-16, 15, 15.6f, 0, -1, 0.5f, -0.5f, -0.6f};
    std::copy(first, first + 8, x.begin());
    for (int k = 0; k < 16; ++k) x[16 + k] = static_cast<float>(k - 8);
    // qh: 5th bits of values 1, 2, 3, 5, 6, 8..15 (0x6E, 0xFF) and 24..31 (0x00, 0xFF).
    // qs[j] = (q[j] & 15) | (q[j+16] & 15) << 4.
    const Bytes want = {0x00, 0x3C, 0x6E, 0xFF, 0x00, 0xFF, 0x80, 0x9F, 0xAF, 0xB0, 0xCF,
                        0xD1, 0xE0, 0xFF, 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70};
    EXPECT_EQ(quantize(GgmlType::Q5_0, x, 1, 32), want);
    std::vector<float> back = {-16, 15, 15, 0, -1, 1, 0, -1};
    back.resize(16, 0.0f);
    for (int k = 0; k < 16; ++k) back.push_back(static_cast<float>(k - 8));
    EXPECT_EQ(dequantize(GgmlType::Q5_0, want, 1, 32), back);
}

// ---- Hand-built K-quant blocks ----

TEST(Quants, Q4_KHandBlock) {
    const int sc[8] = {1, 2, 63, 17, 33, 5, 48, 0};
    const int mn[8] = {0, 3, 63, 10, 40, 7, 1, 20};
    Bytes     b(144, 0);
    b[0] = 0x00;  // d = 0.5
    b[1] = 0x38;
    b[2] = 0x00;  // dmin = 0.25
    b[3] = 0x34;
    // Packed by hand: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins);
    // 4..7 in the nibbles of bytes 8..11 (scale low, min high), their top 2 bits in bits 6-7 of
    // bytes 0..3 (scales: 33 -> 2, 5 -> 0, 48 -> 3, 0 -> 0) and 4..7 (mins: 40 -> 2, 7 -> 0,
    // 1 -> 0, 20 -> 1).
    const uint8_t scales[12] = {0x81, 0x02, 0xFF, 0x11, 0x80, 0x03, 0x3F, 0x4A, 0x81, 0x75, 0x10, 0x40};
    std::copy(scales, scales + 12, b.begin() + 4);
    std::vector<int> q(256);
    for (int i = 0; i < 256; ++i) q[i] = (i * 7 + i / 16) % 16;
    for (int g = 0; g < 4; ++g)
        for (int l = 0; l < 32; ++l) b[16 + 32 * g + l] = static_cast<uint8_t>(q[64 * g + l] + 16 * q[64 * g + 32 + l]);
    // A few bytes by hand: qs[0] = 0xA5 holds value 0 (5) and value 32 (10); qs[127] = 0x0F holds
    // value 223 (15, sub-block 6) and value 255 (0, sub-block 7).
    b[16]  = 0xA5;
    q[0]   = 5;
    q[32]  = 10;
    b[143] = 0x0F;
    q[223] = 15;
    q[255] = 0;

    const std::vector<float> got = dequantize(GgmlType::Q4_K, b, 1, 256);
    for (int i = 0; i < 256; ++i) {
        const float want = 0.5f * static_cast<float>(sc[i / 32] * q[i]) - 0.25f * static_cast<float>(mn[i / 32]);
        EXPECT_EQ(got[i], want) << "value " << i;
    }
    EXPECT_EQ(got[0], 2.5f);      // 0.5 x 1 x 5 - 0.25 x 0
    EXPECT_EQ(got[32], 9.25f);    // 0.5 x 2 x 10 - 0.25 x 3
    EXPECT_EQ(got[223], 359.75f); // 0.5 x 48 x 15 - 0.25 x 1
    EXPECT_EQ(got[255], -5.0f);   // 0.5 x 0 x 0 - 0.25 x 20
    EXPECT_EQ(got[64], 0.5f * 63 * q[64] - 0.25f * 63);
    EXPECT_EQ(got, ref_decode(GgmlType::Q4_K, b.data(), 1));
}

TEST(Quants, Q6_KHandBlock) {
    const int sc[16] = {1, -2, 3, 4, -128, 5, 2, 7, 9, -10, 11, 12, -1, 64, 15, 127};
    Bytes     b(210, 0);
    for (int j = 0; j < 16; ++j) b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
    b[208] = 0x00;  // d = 0.25
    b[209] = 0x34;
    std::vector<int> q(256);
    for (int i = 0; i < 256; ++i) q[i] = (i * 5 + 3) % 64;
    // Per half h: ql[64h + l] = q[l] | q[l+64] << 4 (low nibbles), ql[64h + l + 32] = q[l+32] |
    // q[l+96] << 4, qh[32h + l] = the top 2 bits of q[l], q[l+32], q[l+64], q[l+96] at 0, 2, 4, 6.
    for (int h = 0; h < 2; ++h) {
        const int * v = q.data() + 128 * h;
        for (int l = 0; l < 32; ++l) {
            b[64 * h + l]       = static_cast<uint8_t>(v[l] % 16 + 16 * (v[l + 64] % 16));
            b[64 * h + l + 32]  = static_cast<uint8_t>(v[l + 32] % 16 + 16 * (v[l + 96] % 16));
            b[128 + 32 * h + l] = static_cast<uint8_t>(v[l] / 16 + 4 * (v[l + 32] / 16) + 16 * (v[l + 64] / 16) + 64 * (v[l + 96] / 16));
        }
    }
    // Bytes by hand: ql[0] = 0x21, ql[32] = 0x9F, qh[0] = 0xE4 (bits 00 01 10 11 from the bottom):
    // value 0: 1 | 0 << 4 = 1; value 32: 15 | 1 << 4 = 31; value 64: 2 | 2 << 4 = 34;
    // value 96: 9 | 3 << 4 = 57. Second half: ql[64] = 0x3C, qh[32] = 0x1B (bits 11 10 01 00):
    // value 128: 12 | 3 << 4 = 60; value 192: 3 | 1 << 4 = 19.
    b[0]   = 0x21;
    b[32]  = 0x9F;
    b[128] = 0xE4;
    q[0]   = 1;
    q[32]  = 31;
    q[64]  = 34;
    q[96]  = 57;
    b[64]  = 0x3C;
    b[160] = 0x1B;
    q[128] = 60;
    q[192] = 19;
    // qh[32] also holds the top bits of values 160 (bits 2-3: 2) and 224 (bits 6-7: 0), whose low
    // bits are ql[96]'s nibbles.
    q[160] = (b[96] & 15) + 16 * 2;
    q[224] = (b[96] >> 4) + 16 * 0;

    const std::vector<float> got = dequantize(GgmlType::Q6_K, b, 1, 256);
    for (int i = 0; i < 256; ++i) {
        const float want = 0.25f * static_cast<float>(sc[i / 16]) * static_cast<float>(q[i] - 32);
        EXPECT_EQ(got[i], want) << "value " << i;
    }
    EXPECT_EQ(got[0], -7.75f);   // 0.25 x 1 x (1 - 32)
    EXPECT_EQ(got[32], -0.75f);  // 0.25 x 3 x (31 - 32)
    EXPECT_EQ(got[64], -64.0f);  // 0.25 x -128 x (34 - 32)
    EXPECT_EQ(got[96], 12.5f);   // 0.25 x 2 x (57 - 32)
    EXPECT_EQ(got[128], 63.0f);  // 0.25 x 9 x (60 - 32)
    EXPECT_EQ(got[192], 3.25f);  // 0.25 x -1 x (19 - 32)
    EXPECT_EQ(got, ref_decode(GgmlType::Q6_K, b.data(), 1));
}

// Random bytes (with finite halves for d, dmin) decode as the header's formulas say.
TEST(Quants, DequantizeMatchesHeaderFormulas) {
    std::mt19937 rng(11);
    auto         random_half = [&](int emin, int emax) {
        const int e = std::uniform_int_distribution<int>(emin, emax)(rng);
        return static_cast<uint16_t>((rng() & 0x8000u) | (e << 10) | (rng() & 0x3FFu));
    };
    for (GgmlType t : kQuantTypes) {
        SCOPED_TRACE(ggml_type_name(t));
        const size_t blocks = 64;
        const size_t bb     = ggml_block_bytes(t);
        Bytes        b(blocks * bb);
        for (uint8_t & v : b) v = static_cast<uint8_t>(rng());
        for (size_t k = 0; k < blocks; ++k) {
            uint8_t * p    = b.data() + k * bb;
            const int emin = k % 8 == 0 ? 0 : 5;  // some subnormal halves too
            auto      put  = [&](size_t at, uint16_t h) {
                p[at]     = static_cast<uint8_t>(h & 0xFF);
                p[at + 1] = static_cast<uint8_t>(h >> 8);
            };
            if (t == GgmlType::Q6_K) put(208, random_half(emin, 20));
            else put(0, random_half(emin, 20));
            if (t == GgmlType::Q4_K) put(2, random_half(emin, 20));
        }
        const int64_t n = static_cast<int64_t>(blocks) * ggml_block_size(t);
        EXPECT_EQ(dequantize(t, b, 2, n / 2), ref_decode(t, b.data(), blocks));
    }
}

// ---- Error bounds on random data ----

// Q8_0: q = round(x/d) with d = amax/127, so |x/d - q| <= 1/2 (plus float rounding, 1e-4 here);
// d is stored as a half, within d x 2^-11 (all d here are normal halves), and |q| <= 127, so
// |x - d_half q| <= d (1/2 + 1e-4) + 127 d 2^-11.
// Q4_0 (Q5_0 alike with 16): d = max/-8, r = x/d in [-8, 8], q = min(15, int(r + 8.5)): for
// r <= 7.5 the level q - 8 is r rounded, |r - (q-8)| <= 1/2; above, q clamps to 15 and the error
// is r - 7 <= 1 (the side opposite max has one level less); the half adds 8 |d| 2^-11.
// Q4_K, Q6_K: (a) every value sits at its nearest level of its sub-block's stored grid
// (decoded here); (b) a loose a-priori bound: the sub-block fits only ever lower the squared
// error below the plain grid's (Q6_K: max at -32, half-step amax/64 over 16 values; Q4_K: 16
// levels over [min(0, min), max], half-step R/30 over 32 values, R the range with 0), so one
// value's error is at most sqrt(16) amax/64 = amax/16 (Q6_K) or sqrt(32) R/30 = 0.19 R (Q4_K)
// before the scales are rounded to 8 or 6 bits; the nearest rounding of a scale moves a level by
// at most 32 d/2 (Q6_K, d = max|s|/127: about amax/254) or 15 d/2 + dmin/2 (Q4_K: about R/63),
// and the +-1 search only lowers the squared error further, so over the sub-block's n values the
// bound grows by at most sqrt(n) times that: amax/16 + amax/63 < amax/10, and 0.19 R + 0.09 R < R/3.
TEST(Quants, ErrorBoundsOnRandomData) {
    for (uint32_t seed : {1u, 2u, 3u})
        for (int64_t n : {256, 512, 4096})
            for (Dist dist : {Dist::Gaussian, Dist::Uniform, Dist::Outliers, Dist::Offset})
                for (float sigma : {1.0f, 0.02f}) {
                    const int64_t            rows = 2;
                    const std::vector<float> x    = make_data(dist, seed * 1000 + static_cast<uint32_t>(n), rows * n, sigma);
                    for (GgmlType t : kQuantTypes) {
                        SCOPED_TRACE(testing::Message() << ggml_type_name(t) << " seed " << seed << " n " << n << " "
                                                        << dist_name(dist) << " sigma " << sigma);
                        const Bytes              b  = quantize(t, x, rows, n);
                        const std::vector<float> y  = dequantize(t, b, rows, n);
                        const int64_t            bs = ggml_block_size(t);
                        int                      failures = 0;
                        for (int64_t k = 0; k < rows * n / bs && failures < 5; ++k) {
                            const float * xs = x.data() + k * bs;
                            const float * ys = y.data() + k * bs;
                            double        amax = 0, max = 0, lo = 0, hi = 0;
                            for (int i = 0; i < bs; ++i) {
                                if (std::fabs(xs[i]) > amax) {
                                    amax = std::fabs(xs[i]);
                                    max  = xs[i];
                                }
                                lo = std::min(lo, static_cast<double>(xs[i]));
                                hi = std::max(hi, static_cast<double>(xs[i]));
                            }
                            for (int i = 0; i < bs; ++i) {
                                const double err = std::fabs(static_cast<double>(xs[i]) - ys[i]);
                                double       bound;
                                if (t == GgmlType::Q8_0) {
                                    const double d = amax / 127;
                                    bound          = d * (0.5 + 1e-4) + 127 * d * std::ldexp(1.0, -11);
                                } else if (t == GgmlType::Q4_0 || t == GgmlType::Q5_0) {
                                    const double half_levels = t == GgmlType::Q4_0 ? 8 : 16;
                                    const double d = max / -half_levels, r = xs[i] / d;
                                    bound = std::fabs(d) * ((r <= half_levels - 0.5 - 1e-3 ? 0.5 : 1.0) + 1e-4 +
                                                            half_levels * std::ldexp(1.0, -11));
                                } else {
                                    const Grid   g       = k_grid(t, b.data() + k * ggml_block_bytes(t), i);
                                    const double nearest = nearest_level_distance(g, xs[i]);
                                    if (err > nearest + 1e-6 * (amax + std::fabs(g.step) * 32 + std::fabs(g.offset))) {
                                        ADD_FAILURE() << "block " << k << " value " << i << ": x " << xs[i] << " got " << ys[i]
                                                      << " but a level is " << nearest << " away";
                                        ++failures;
                                    }
                                    bound = t == GgmlType::Q6_K ? amax / 10 : (hi - lo) / 3;
                                }
                                if (!(err <= bound)) {
                                    ADD_FAILURE() << "block " << k << " value " << i << ": x " << xs[i] << " got " << ys[i]
                                                  << " error " << err << " > bound " << bound;
                                    ++failures;
                                }
                            }
                        }
                    }
                }
}

// RMS error relative to the signal's RMS on Gaussian data. Estimates: rounding to a grid of step
// s leaves an RMS error near s/sqrt(12); the largest magnitude among 32 N(0,1) values is about
// 2.1 sigma and among 16 about 1.8, the range of 32 (with 0) about 4.1. Q8_0: s = 2.1/127 ->
// 0.0048; Q4_0: s = 2.1/8 -> 0.076, plus the clipped top level; Q5_0: s = 2.1/16 -> 0.038;
// Q4_K: s = 4.1/15 -> 0.079 for a plain min/max grid; Q6_K: s = 1.8/32 -> 0.016. The bounds
// leave room for E[amax^2] > E[amax]^2 and the scales' rounding. The K-quants must also beat (Q4_K)
// or match within 5% (Q6_K, whose 8-bit scales cost a little when one sub-block dominates)
// plain grids with exact scales on every distribution. Small sigma makes the scales d subnormal
// halves with few significant bits (sigma 1e-4: Q6_K's d is about 6e-7, ten steps of 2^-24):
// the K-quants must hold their accuracy there too; Q8_0 stores d as llama.cpp does and loses
// accuracy below sigma 0.02 or so, so its bound is checked above that only.
TEST(Quants, RmsError) {
    const int64_t n = 4096, rows = 32;
    for (float sigma : {1.0f, 0.02f, 1e-3f, 1e-4f}) {
        const std::vector<float> x   = make_data(Dist::Gaussian, 77, rows * n, sigma);
        const double             sig = rms(x);
        double                   rel[5];
        for (int k = 0; k < 5; ++k) {
            const GgmlType t = kQuantTypes[k];
            rel[k]           = rms(x, dequantize(t, quantize(t, x, rows, n), rows, n)) / sig;
        }
        SCOPED_TRACE(testing::Message() << "sigma " << sigma << ": q8_0 " << rel[0] << " q4_0 " << rel[1] << " q5_0 "
                                        << rel[2] << " q4_K " << rel[3] << " q6_K " << rel[4]);
        if (sigma >= 0.02f) {
            EXPECT_LT(rel[0], 0.007);  // for smaller sigma Q8_0's d = amax/127 is a subnormal half
        }
        EXPECT_LT(rel[1], 0.10);
        EXPECT_LT(rel[2], 0.05);
        EXPECT_LT(rel[3], 0.08);
        EXPECT_LT(rel[4], 0.02);
        // Bits buy accuracy: Q6_K < Q5_0 < Q4_K < Q4_0, and Q8_0 below them all.
        if (sigma >= 0.02f) {
            EXPECT_LT(rel[0], rel[4]);
        }
        EXPECT_LT(rel[4], rel[2]);
        EXPECT_LT(rel[2], rel[3]);
        EXPECT_LT(rel[3], rel[1]);
    }
    for (Dist dist : {Dist::Gaussian, Dist::Uniform, Dist::Outliers, Dist::Offset}) {
        const std::vector<float> x = make_data(dist, 5, rows * n, 0.02f);
        for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K}) {
            const double got   = rms(x, dequantize(t, quantize(t, x, rows, n), rows, n));
            const double plain = std::sqrt(plain_grid_sse(t, x) / static_cast<double>(x.size()));
            EXPECT_LE(got, plain * (t == GgmlType::Q4_K ? 1.0 : 1.05))
                << ggml_type_name(t) << " " << dist_name(dist) << ": rms " << got << ", plain grid " << plain;
        }
    }
}

// ---- Round trips ----

// Q8_0, Q4_0, Q5_0 are idempotent: in x' = dequantize(quantize(x)) the largest magnitude is
// 127 d (Q8_0) or the value -8 d (-16 d) at q = 0 (the largest x always lands there), with d the
// stored half, so quantizing x' recomputes exactly that d (127 d / 127 and -8 d / -8 are exact)
// and x' / d lands within a few float ulps of its integer, which rounds (or, plus 8.5, truncates)
// back to the same q. (It fails only where d rounds to a zero half, for amax below about 4e-6.)
// Q4_K and Q6_K are not: their fits search for scales and may settle on other, equally good
// ones for x', so for them requantizing x' must only move it by much less than the first error.
TEST(Quants, RequantizingIsStable) {
    for (Dist dist : {Dist::Gaussian, Dist::Uniform, Dist::Outliers, Dist::Offset})
        for (uint32_t seed : {1u, 2u}) {
            const int64_t            n = 4096, rows = 4;
            const std::vector<float> x = make_data(dist, seed, rows * n, 0.02f);
            for (GgmlType t : kQuantTypes) {
                SCOPED_TRACE(testing::Message() << ggml_type_name(t) << " " << dist_name(dist) << " seed " << seed);
                const Bytes              b1 = quantize(t, x, rows, n);
                const std::vector<float> y1 = dequantize(t, b1, rows, n);
                const Bytes              b2 = quantize(t, y1, rows, n);
                if (t == GgmlType::Q4_K || t == GgmlType::Q6_K) {
                    const std::vector<float> y2 = dequantize(t, b2, rows, n);
                    EXPECT_LT(rms(y1, y2), 0.5 * rms(x, y1));
                } else {
                    EXPECT_TRUE(b1 == b2);
                }
            }
        }
}

TEST(Quants, FloatTypesRoundTrip) {
    // Every finite half and every finite bfloat16 survives f32 -> bytes -> f32 unchanged.
    std::vector<float>    hv, bv;
    std::vector<uint16_t> hbits, bbits;
    for (uint32_t h = 0; h < 65536; ++h) {
        if (((h >> 10) & 31) != 31) {
            hbits.push_back(static_cast<uint16_t>(h));
            hv.push_back(static_cast<float>(half(static_cast<uint16_t>(h))));
        }
        if (((h >> 7) & 0xFF) != 0xFF) {
            bbits.push_back(static_cast<uint16_t>(h));
            bv.push_back(std::bit_cast<float>(h << 16));
        }
    }
    auto check = [](GgmlType t, const std::vector<float> & v, const std::vector<uint16_t> & bits) {
        SCOPED_TRACE(ggml_type_name(t));
        const auto  n = static_cast<int64_t>(v.size());
        const Bytes b = quantize(t, v, 1, n);
        ASSERT_EQ(b.size(), 2 * v.size());
        Bytes want;
        for (uint16_t h : bits) {
            want.push_back(static_cast<uint8_t>(h & 0xFF));
            want.push_back(static_cast<uint8_t>(h >> 8));
        }
        EXPECT_TRUE(b == want);
        const std::vector<float> back = dequantize(t, b, 1, n);
        EXPECT_EQ(std::memcmp(back.data(), v.data(), v.size() * sizeof(float)), 0);  // -0 stays -0
    };
    check(GgmlType::F16, hv, hbits);
    check(GgmlType::BF16, bv, bbits);

    // Round to nearest even: 1 + 2^-11 is halfway between halves 0x3C00 and 0x3C01 -> 0x3C00;
    // 1 + 3 x 2^-11 between 0x3C01 and 0x3C02 -> 0x3C02. bfloat16 likewise with 2^-8.
    const std::vector<float> ties = {1 + std::ldexp(1.0f, -11), 1 + 3 * std::ldexp(1.0f, -11)};
    EXPECT_EQ(quantize(GgmlType::F16, ties, 1, 2), (Bytes{0x00, 0x3C, 0x02, 0x3C}));
    const std::vector<float> bties = {1 + std::ldexp(1.0f, -8), 1 + 3 * std::ldexp(1.0f, -8)};
    EXPECT_EQ(quantize(GgmlType::BF16, bties, 1, 2), (Bytes{0x80, 0x3F, 0x82, 0x3F}));

    // F32 is the bytes themselves, NaN payloads and all.
    std::vector<float> f = make_data(Dist::Gaussian, 3, 64, 1.0f);
    f[5]                 = std::bit_cast<float>(0x7FC01234u);
    f[6]                 = -std::numeric_limits<float>::infinity();
    const Bytes fb       = quantize(GgmlType::F32, f, 2, 32);
    ASSERT_EQ(fb.size(), 256u);
    EXPECT_EQ(std::memcmp(fb.data(), f.data(), 256), 0);
    const std::vector<float> fback = dequantize(GgmlType::F32, fb, 2, 32);
    EXPECT_EQ(std::memcmp(fback.data(), f.data(), 256), 0);
}

// ---- Zero and constant blocks ----

TEST(Quants, ZeroBlocks) {
    // Q8_0: d = 0, q = 0. Q4_0 / Q5_0: max = 0 gives d = 0 / -8 = -0 (half 0x8000, as llama.cpp
    // writes it) and x * 0 + 8.5 -> q = 8 (Q5_0: 16, low nibble 0 with its 5th bit set). Q4_K:
    // all scales, mins and quants 0. Q6_K: d = 0, scales 0, q = 32 (ql nibbles 0, qh 2 per value:
    // 0b10101010).
    Bytes q8(34, 0x00);
    Bytes q4(18, 0x88);
    q4[0] = 0x00;
    q4[1] = 0x80;
    Bytes q5(22, 0x00);
    q5[1] = 0x80;
    std::fill(q5.begin() + 2, q5.begin() + 6, 0xFF);
    Bytes q4k(144, 0x00);
    Bytes q6k(210, 0x00);
    std::fill(q6k.begin() + 128, q6k.begin() + 192, 0xAA);
    const std::pair<GgmlType, Bytes> cases[] = {
        {GgmlType::Q8_0, q8}, {GgmlType::Q4_0, q4}, {GgmlType::Q5_0, q5}, {GgmlType::Q4_K, q4k}, {GgmlType::Q6_K, q6k}};
    for (const auto & [t, want] : cases) {
        SCOPED_TRACE(ggml_type_name(t));
        const int64_t            bs = ggml_block_size(t);
        const std::vector<float> x(static_cast<size_t>(bs), 0.0f);
        const Bytes              b = quantize(t, x, 1, bs);
        EXPECT_EQ(b, want);
        for (float v : dequantize(t, b, 1, bs)) EXPECT_EQ(v, 0.0f);
    }
}

TEST(Quants, ConstantBlocks) {
    {
        // Q8_0, c = 0.75: d = 0.75/127 = 0.0059055 -> half 2^-8 x (1 + 524/1024) = 0.0059051513671875
        // (0x1E0C); q = 127 everywhere; back: 127 d = 0.7499542236328125.
        const std::vector<float> x(32, 0.75f);
        Bytes                    want(34, 0x7F);
        want[0] = 0x0C;
        want[1] = 0x1E;
        EXPECT_EQ(quantize(GgmlType::Q8_0, x, 1, 32), want);
        for (float v : dequantize(GgmlType::Q8_0, want, 1, 32)) EXPECT_EQ(v, 0.7499542236328125f);
    }
    {
        // Q4_0, c = -0.75: d = 0.09375 = 1.5 x 2^-4 (0x2E00), q = int(-8 + 8.5) = 0; back exact.
        const std::vector<float> x(32, -0.75f);
        Bytes                    want(18, 0x00);
        want[1] = 0x2E;
        EXPECT_EQ(quantize(GgmlType::Q4_0, x, 1, 32), want);
        for (float v : dequantize(GgmlType::Q4_0, want, 1, 32)) EXPECT_EQ(v, -0.75f);
    }
    {
        // Q5_0, c = 1.5: d = 1.5 / -16 = -0.09375 (0xAE00), q = int(-16 + 16.5) = 0; back exact.
        const std::vector<float> x(32, 1.5f);
        Bytes                    want(22, 0x00);
        want[1] = 0xAE;
        EXPECT_EQ(quantize(GgmlType::Q5_0, x, 1, 32), want);
        for (float v : dequantize(GgmlType::Q5_0, want, 1, 32)) EXPECT_EQ(v, 1.5f);
    }
    {
        // Q4_K, c = 945/1024 = 15 x 63 x 2^-10: the exact fit is scale c/15 at q = 15, min 0, so
        // d = 2^-10 (0x1400), dmin = 0, every scale 63 (bytes 0-3: 63 | 3 << 6 = 0xFF; 4-7: 0;
        // 8-11: 0x0F), every quant 15. c = -945/1024: scale 0, min 945/1024 = 63 x 15/1024, so
        // dmin = 15/1024 (0x2380), every min 63 (bytes 4-7: 0xFF, 8-11: 0xF0), quants 0.
        const float c = 945.0f / 1024;
        Bytes       want(144, 0xFF);
        want[0] = 0x00;
        want[1] = 0x14;
        want[2] = 0x00;
        want[3] = 0x00;
        std::fill(want.begin() + 8, want.begin() + 12, 0x00);
        std::fill(want.begin() + 12, want.begin() + 16, 0x0F);
        EXPECT_EQ(quantize(GgmlType::Q4_K, std::vector<float>(256, c), 1, 256), want);
        for (float v : dequantize(GgmlType::Q4_K, want, 1, 256)) EXPECT_EQ(v, c);

        Bytes neg(144, 0x00);
        neg[2] = 0x80;  // 15/1024 = 1.875 x 2^-7: exponent 8, mantissa 896 -> 0x2380
        neg[3] = 0x23;
        std::fill(neg.begin() + 8, neg.begin() + 12, 0xFF);
        std::fill(neg.begin() + 12, neg.begin() + 16, 0xF0);
        EXPECT_EQ(quantize(GgmlType::Q4_K, std::vector<float>(256, -c), 1, 256), neg);
        for (float v : dequantize(GgmlType::Q4_K, neg, 1, 256)) EXPECT_EQ(v, -c);
    }
    {
        // Q6_K, c = 4064/4096 = 127 x 32 x 2^-12: every sub-block's scale c / -32, so d = 2^-12
        // (0x0C00), every scale -127 (0x81), every q -32 (stored 0: ql, qh all zero); back exact.
        // For -c the scales are +127 (0x7F).
        const float c = 4064.0f / 4096;
        for (const float v : {c, -c}) {
            Bytes want(210, 0x00);
            std::fill(want.begin() + 192, want.begin() + 208, v > 0 ? 0x81 : 0x7F);
            want[209] = 0x0C;
            EXPECT_EQ(quantize(GgmlType::Q6_K, std::vector<float>(256, v), 1, 256), want) << v;
            for (float y : dequantize(GgmlType::Q6_K, want, 1, 256)) EXPECT_EQ(y, v);
        }
    }
}

// ---- Rows, determinism, non-finite input ----

TEST(Quants, RowsAreIndependentAndDeterministic) {
    const int64_t            n = 512, rows = 6;
    const std::vector<float> x = make_data(Dist::Outliers, 9, rows * n, 0.05f);
    for (GgmlType t : kQuantTypes) {
        SCOPED_TRACE(ggml_type_name(t));
        const Bytes  all = quantize(t, x, rows, n);
        const size_t rb  = ggml_row_bytes(t, n);
        EXPECT_TRUE(all == quantize(t, x, rows, n));
        for (int64_t r = 0; r < rows; ++r) {
            const std::vector<float> row(x.begin() + r * n, x.begin() + (r + 1) * n);
            const Bytes              one = quantize(t, row, 1, n);
            EXPECT_TRUE(std::equal(one.begin(), one.end(), all.begin() + static_cast<ptrdiff_t>(r * rb))) << "row " << r;
        }
        // The same values as one long row give the same bytes (blocks never straddle rows).
        EXPECT_TRUE(all == quantize(t, x, 1, rows * n));
        EXPECT_EQ(dequantize(t, all, rows, n), dequantize(t, all, 1, rows * n));
    }
}

// NaN and Inf give unspecified bytes (the exporter refuses such tensors first), but the call must
// be safe, deterministic, and leave the other blocks of the row alone. F16 and BF16 keep them.
TEST(Quants, NonFiniteInputIsContained) {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    for (GgmlType t : kQuantTypes) {
        SCOPED_TRACE(ggml_type_name(t));
        const int64_t            bs    = ggml_block_size(t);
        const std::vector<float> clean = make_data(Dist::Gaussian, 4, static_cast<size_t>(2 * bs), 1.0f);
        const Bytes              ref   = quantize(t, clean, 1, 2 * bs);
        const size_t             bb    = ggml_block_bytes(t);
        for (float bad : {nan, inf, -inf}) {
            for (int where : {0, 5, static_cast<int>(bs) - 1}) {
                std::vector<float> x = clean;
                x[where]             = bad;
                const Bytes b        = quantize(t, x, 1, 2 * bs);
                EXPECT_TRUE(b == quantize(t, x, 1, 2 * bs));
                EXPECT_TRUE(std::equal(b.begin() + static_cast<ptrdiff_t>(bb), b.end(), ref.begin() + static_cast<ptrdiff_t>(bb)));
                const std::vector<float> y = dequantize(t, b, 1, 2 * bs);
                for (int64_t i = bs; i < 2 * bs; ++i) EXPECT_EQ(y[i], dequantize(t, ref, 1, 2 * bs)[i]);
            }
        }
        std::vector<float> all_bad(static_cast<size_t>(bs), nan);
        (void) quantize(t, all_bad, 1, bs);
        std::fill(all_bad.begin(), all_bad.end(), inf);
        (void) quantize(t, all_bad, 1, bs);
    }
    const std::vector<float> special = {nan, inf, -inf, 1.0f};
    for (GgmlType t : {GgmlType::F16, GgmlType::BF16}) {
        const std::vector<float> y = dequantize(t, quantize(t, special, 1, 4), 1, 4);
        EXPECT_TRUE(std::isnan(y[0]));
        EXPECT_EQ(y[1], inf);
        EXPECT_EQ(y[2], -inf);
        EXPECT_EQ(y[3], 1.0f);
    }
}

}  // namespace
