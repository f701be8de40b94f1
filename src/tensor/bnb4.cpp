// bitsandbytes' 4-bit weights (NF4, FP4) as its quantize_4bit / dequantize_4bit compute them with
// blocksize 64, optionally with the absmax values quantized again (compress_statistics, the
// double quantization of QLoRA).
//
// The format, over the flattened tensor of n values:
//   absmax[b]   max |x| over values [64b, 64b + 64) (the last block may be shorter), f32
//   code        4 bits per value: the code c whose table value is nearest to x * (1 / absmax[b]) by
//               bitsandbytes' decision trees (fixed thresholds, strict ">"); value 2i in the high
//               nibble of byte i, value 2i+1 in the low nibble
//   value       table[c] * absmax[b], one f32 product
// Double quantization replaces the f32 absmax by
//   offset      the mean of all absmax values (one f32)
//   absmax_q[b] an 8-bit code into bitsandbytes' signed dynamic map (create_dynamic_map) of
//               (absmax[b] - offset) / absmax_scale[b / 256]
//   absmax_scale[k]  max |absmax[b] - offset| over blocks [256k, 256k + 256)
// and the absmax the values are decoded with is (map[absmax_q[b]] * absmax_scale[b / 256]) +
// offset: two f32 roundings, as bitsandbytes dequantizes the codes first and adds the offset in a
// separate torch operation.
//
// Where bitsandbytes' CUDA build and plain f32 arithmetic can differ (it compiles with
// --use_fast_math): it takes 1/absmax with an approximate reciprocal (within 1 ulp) where this
// file rounds correctly, and it flushes subnormal products to zero. Neither matters unless a
// normalized value lies within an ulp of a threshold, or values span more than 38 decades in a
// block.
#include "tensor/weight.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

// Every product and sum below is rounded on its own, as the CUDA kernels round them (this file is
// compiled with -ffp-contract=off, CMakeLists.txt); the one fused multiply-add bitsandbytes' map
// needs is spelled std::fma.

namespace paft {

// The code values of bitsandbytes' dequantization (csrc/kernels.cu dDequantizeNF4): the
// quantiles of N(0, 1) scaled to [-1, 1], with an exact zero at code 7.
const float kNF4Values[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// FP4 (1 sign bit, 2 exponent bits, 1 mantissa bit, values 0, 0.0625, 2, 3, 4, 6, 8, 12 divided
// by 12) as dDequantizeFP4Tree returns them: the constant times absmax times the sign, which is
// the signed constant times absmax (multiplying by -1 is exact). Code 8 is -0.
const float kFP4Values[16] = {
    0.0f, 5.208333333e-03f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f,
    -0.0f, -5.208333333e-03f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f,
};

namespace {

const float * table_of(WeightType type) {
    switch (type) {
    case WeightType::NF4: return kNF4Values;
    case WeightType::FP4: return kFP4Values;
    default: throw std::invalid_argument("bnb4: the weight type is not NF4 or FP4");
    }
}

// dQuantizeNF4's decision tree, flattened: its 15 pivots in ascending order. Every test is
// x > pivot, so the code is the number of pivots below x, a value on a pivot takes the lower
// code, and NaN (which fails every test) takes code 0. The pivots are the kernel's float
// literals, each the decimal rounded once to float (through double, four would differ by an ulp).
constexpr float kNF4Pivots[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
};

uint8_t nf4_code(float x) {
    uint8_t code = 0;
    for (float pivot : kNF4Pivots) {
        code += x > pivot ? 1 : 0;
    }
    return code;
}

// dQuantizeFP4: the sign bit from x < 0 (so -0 and NaN are positive), then a tree over |x| with
// these pivots (midpoints of the magnitudes, in units of the largest, 12), ascending; the k-th
// magnitude interval has the code kFP4ByRank[k].
constexpr float   kFP4Pivots[7]  = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                    0.4166667f,  0.583333f,  0.8333333f};
constexpr uint8_t kFP4ByRank[8] = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};

uint8_t fp4_code(float x) {
    const uint8_t sign      = x < 0.0f ? 0b1000 : 0;
    const float   magnitude = std::fabs(x);
    int           rank      = 0;
    for (float pivot : kFP4Pivots) {
        rank += magnitude > pivot ? 1 : 0;
    }
    return static_cast<uint8_t>(sign | kFP4ByRank[rank]);
}

// The signed dynamic map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)):
// for e = 0..6, the 2^e means of adjacent points of torch.linspace(0.1, 1, 2^e + 1) in float32,
// times 10^(e-6) and its negative; plus 0 and 1; sorted. All of it is torch float32 arithmetic.
// torch's CPU linspace (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp) computes point i of
// `steps` as start + step*i for i < steps/2 and end - step*(steps-1-i) after, with step =
// (end - start) / (steps - 1), and x86-64 builds fuse each into one multiply-add. The map is
// thus the torch build's, not a constant of bitsandbytes: this one is current torch's on x86-64
// (a dump of the map embedded by another project agrees entry for entry); torch 1.13, which
// vectorised linspace, or a build without fused multiply-adds, differ in about 42 of the 256
// entries by an ulp.
std::array<float, 256> make_dynamic_map() {
    std::array<float, 256> map{};
    size_t                 n = 0;
    for (int e = 0; e < 7; e++) {
        const int   steps = (1 << e) + 1;
        const float start = static_cast<float>(0.1), end = 1.0f;
        const float step  = (end - start) / static_cast<float>(steps - 1);
        float       points[65];
        for (int i = 0; i < steps; i++) {
            points[i] = i < steps / 2 ? std::fma(step, static_cast<float>(i), start)
                                      : std::fma(-step, static_cast<float>(steps - 1 - i), end);
        }
        // Python's 10 ** (e - 6) is pow(10.0, e - 6) in double, which torch rounds to float
        // before multiplying the float32 means.
        const float decade = static_cast<float>(std::pow(10.0, e - 6));
        for (int i = 0; i + 1 < steps; i++) {
            const float mean = (points[i] + points[i + 1]) / 2.0f;
            const float v    = decade * mean;
            map[n++]         = v;
            map[n++]         = -v;
        }
    }
    map[n++] = 0.0f;
    map[n++] = 1.0f;
    if (n != map.size()) {
        throw std::logic_error("bnb_dynamic_map: wrong number of values");
    }
    std::sort(map.begin(), map.end());
    return map;
}

// The code of x in the dynamic map as bitsandbytes' dQuantize (non-stochastic) finds it: a
// binary search over the 127 odd entries 1, 3, .., 253 (x > entry goes up) ends on the even
// index p = 2 * (number of those entries below x); then x is compared with the f32 midpoint
// (a + b) * 0.5f towards the neighbour on its side: p + 1 when x > map[p] and x > the midpoint,
// p - 1 when x <= map[p] and x < the midpoint, else p. A value on a midpoint thus takes the even
// index, and NaN (every test false) takes 0.
uint8_t dynamic_code(const float * map, float x) {
    int below = 0;  // odd entries below x, found by halving the range of odd indices
    for (int half = 64; half > 0; half /= 2) {
        const int odd = 2 * (below + half) - 1;  // the next odd entry to test
        if (x > map[odd]) {
            below += half;
        }
    }
    const int p = 2 * below;
    if (x > map[p]) {
        const float midpoint = (map[p + 1] + map[p]) * 0.5f;
        return static_cast<uint8_t>(x > midpoint ? p + 1 : p);
    }
    const int   lower    = p > 0 ? p - 1 : 0;  // at p = 0 the midpoint is map[0] itself
    const float midpoint = (map[lower] + map[p]) * 0.5f;
    return static_cast<uint8_t>(x < midpoint ? lower : p);
}

// The normalized value bitsandbytes' kernels quantize: x times the f32 reciprocal of the block's
// absmax (not x / absmax, which rounds differently). A zero absmax gives 0 * (1/0) = NaN there,
// and NaN fails every comparison of the decision trees; it is produced here without dividing by
// zero.
struct Normalizer {
    float reciprocal;
    bool  zero;
    explicit Normalizer(float absmax) : reciprocal(absmax != 0.0f ? 1.0f / absmax : 0.0f), zero(absmax == 0.0f) {}
    float operator()(float x) const { return zero ? std::numeric_limits<float>::quiet_NaN() : x * reciprocal; }
};

// The 4-bit codes and absmax of the n values of src, block by block (Code: nf4_code or fp4_code).
template <uint8_t (*Code)(float)>
void quantize_blocks(const float * src, int64_t n, uint8_t * codes, float * absmax_out) {
    const int64_t blocks = (n + kBnb4Block - 1) / kBnb4Block;
    // Blocks are independent: any split over threads gives the same bytes.
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        // The block as the kernel loads it: a short last block padded with zeros, which are
        // quantized too (when n is odd, the pad's code fills the last byte's low nibble).
        const int64_t begin = b * kBnb4Block, len = std::min(n - begin, kBnb4Block);
        float         x[kBnb4Block] = {};
        std::copy(src + begin, src + begin + len, x);
        float absmax = 0.0f;  // the max of |x| (a NaN skipped, as fmaxf skips it)
        for (float v : x) {
            absmax = std::max(absmax, std::fabs(v));
        }
        absmax_out[b] = absmax;
        uint8_t code[kBnb4Block];
        if (absmax == 0.0f) {  // 0 * (1/0): NaN for every value (see Normalizer)
            std::fill(code, code + kBnb4Block, Code(std::numeric_limits<float>::quiet_NaN()));
        } else {
            const float reciprocal = 1.0f / absmax;
            for (int64_t k = 0; k < kBnb4Block; k++) {
                code[k] = Code(x[k] * reciprocal);
            }
        }
        for (int64_t k = 0; k < len; k += 2) {
            codes[(begin + k) / 2] = static_cast<uint8_t>((code[k] << 4) | code[k + 1]);
        }
    }
}

// The decoded absmax of block b.
inline float block_absmax(const Weight & w, const float * map, int64_t b) {
    if (w.absmax_q == nullptr) {
        return w.absmax[b];
    }
    const float dequantized = map[w.absmax_q[b]] * w.absmax_scale[b / kBnb4AbsmaxBlock];
    return dequantized + w.absmax_offset;
}

void check_bnb4(const Weight & w, const char * what) {
    if (w.type != WeightType::NF4 && w.type != WeightType::FP4) {
        throw std::invalid_argument(std::string(what) + ": the weight is not NF4 or FP4");
    }
    if (w.absmax_q == nullptr && w.absmax == nullptr && w.numel() > 0) {
        throw std::invalid_argument(std::string(what) + ": the weight has no absmax");
    }
}

}  // namespace

const float * bnb_dynamic_map() {
    static const std::array<float, 256> map = make_dynamic_map();
    return map.data();
}

void bnb4_absmax(const Weight & w, int64_t b0, int64_t n, float * out) {
    check_bnb4(w, "bnb4_absmax");
    if (b0 < 0 || n < 0 || b0 + n > w.blocks()) {
        throw std::out_of_range("bnb4_absmax: blocks outside the weight");
    }
    const float * map = bnb_dynamic_map();
    for (int64_t i = 0; i < n; i++) {
        out[i] = block_absmax(w, map, b0 + i);
    }
}

void bnb4_dequantize(const Weight & w, int64_t first, int64_t count, float * dst) {
    check_bnb4(w, "bnb4_dequantize");
    if (first < 0 || count < 0 || first + count > w.numel()) {
        throw std::out_of_range("bnb4_dequantize: values outside the weight");
    }
    const float *   table = table_of(w.type);
    const float *   map   = bnb_dynamic_map();
    const uint8_t * codes = static_cast<const uint8_t *>(w.data);
    const int64_t   last  = first + count;
    for (int64_t begin = first; begin < last;) {
        const int64_t b     = begin / kBnb4Block;
        const int64_t end   = std::min(last, (b + 1) * kBnb4Block);
        const float   scale = block_absmax(w, map, b);
        int64_t       i     = begin;
        if (i % 2 == 1) {  // a range that starts on a low nibble
            dst[i - first] = table[codes[i / 2] & 15] * scale;
            i++;
        }
        for (; i + 1 < end; i += 2) {
            const uint8_t byte    = codes[i / 2];
            dst[i - first]        = table[byte >> 4] * scale;
            dst[i + 1 - first]    = table[byte & 15] * scale;
        }
        if (i < end) {  // a range that ends on a high nibble
            dst[i - first] = table[codes[i / 2] >> 4] * scale;
        }
        begin = end;
    }
}

Bnb4Weight quantize_bnb4(const float * src, int64_t rows, int64_t cols, WeightType type, bool double_quant) {
    if (type != WeightType::NF4 && type != WeightType::FP4) {
        throw std::invalid_argument("quantize_bnb4: the type is not NF4 or FP4");
    }
    if (rows < 0 || cols < 0) {
        throw std::invalid_argument("quantize_bnb4: negative shape");
    }
    Bnb4Weight q;
    q.weight.type = type;
    q.weight.rows = rows;
    q.weight.cols = cols;
    const int64_t n      = rows * cols;
    const int64_t blocks = q.weight.blocks();
    q.codes.assign(static_cast<size_t>((n + 1) / 2), 0);
    q.absmax.assign(static_cast<size_t>(blocks), 0.0f);
    if (type == WeightType::NF4) {
        quantize_blocks<nf4_code>(src, n, q.codes.data(), q.absmax.data());
    } else {
        quantize_blocks<fp4_code>(src, n, q.codes.data(), q.absmax.data());
    }

    q.weight.data = q.codes.data();
    if (!double_quant) {
        q.weight.absmax = q.absmax.data();
        return q;
    }

    // The offset: bitsandbytes takes torch.mean of the f32 absmax values in f32, whose summation
    // order (a CUDA reduction) cannot be reproduced here. This is the mean in double (a
    // compensated sum, exact for any realistic count of blocks) rounded once to f32: the float
    // nearest the true mean, which torch's f32 mean is within an ulp or so of.
    double sum = 0.0, lost = 0.0;  // Neumaier: `lost` keeps the low bits each addition drops
    for (float a : q.absmax) {
        const double t = sum + a;
        lost += std::fabs(sum) >= std::fabs(a) ? (sum - t) + a : (a - t) + sum;
        sum = t;
    }
    const float offset = blocks > 0 ? static_cast<float>((sum + lost) / static_cast<double>(blocks)) : 0.0f;

    // quantize_blockwise(absmax - offset, blocksize=256) with the signed dynamic map: the same
    // block rule at the 8-bit map (a zero scale again gives NaN, code 0).
    const float * map     = bnb_dynamic_map();
    const int64_t groups  = (blocks + kBnb4AbsmaxBlock - 1) / kBnb4AbsmaxBlock;
    q.absmax_q.assign(static_cast<size_t>(blocks), 0);
    q.absmax_scale.assign(static_cast<size_t>(groups), 0.0f);
    std::vector<float> centered(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; b++) {
        centered[b] = q.absmax[b] - offset;
    }
    for (int64_t g = 0; g < groups; g++) {
        const int64_t begin = g * kBnb4AbsmaxBlock, end = std::min(blocks, begin + kBnb4AbsmaxBlock);
        float         scale = 0.0f;
        for (int64_t b = begin; b < end; b++) {
            scale = std::fmax(scale, std::fabs(centered[b]));
        }
        q.absmax_scale[g] = scale;
        const Normalizer normalize(scale);
        for (int64_t b = begin; b < end; b++) {
            q.absmax_q[b] = dynamic_code(map, normalize(centered[b]));
        }
    }
    q.absmax.clear();
    q.absmax.shrink_to_fit();
    q.weight.absmax_q      = q.absmax_q.data();
    q.weight.absmax_scale  = q.absmax_scale.data();
    q.weight.absmax_offset = offset;
    return q;
}

}  // namespace paft
