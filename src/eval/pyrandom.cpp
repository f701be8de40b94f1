#include "eval/pyrandom.h"

#include <cmath>

namespace paft {

PyRandom::PyRandom(uint64_t seed) {
    // random.seed(n) keys init_by_array with the 32-bit words of |n|, least significant first;
    // 0 gives the key [0].
    std::vector<uint32_t> key;
    do {
        key.push_back(static_cast<uint32_t>(seed));
        seed >>= 32;
    } while (seed != 0);
    init_by_array(key);
}

void PyRandom::init_genrand(uint32_t s) {
    state_[0] = s;
    for (int i = 1; i < kStateSize; i++) {
        state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    }
    index_ = kStateSize;
}

void PyRandom::init_by_array(const std::vector<uint32_t> & key) {
    init_genrand(19650218u);
    const int length = static_cast<int>(key.size());
    int       i = 1, j = 0;
    for (int k = kStateSize > length ? kStateSize : length; k > 0; k--) {
        state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<uint32_t>(j);
        i++;
        j++;
        if (i >= kStateSize) {
            state_[0] = state_[kStateSize - 1];
            i         = 1;
        }
        if (j >= length) {
            j = 0;
        }
    }
    for (int k = kStateSize - 1; k > 0; k--) {
        state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
        i++;
        if (i >= kStateSize) {
            state_[0] = state_[kStateSize - 1];
            i         = 1;
        }
    }
    state_[0] = 0x80000000u;  // the most significant bit is 1: a non-zero initial state
}

uint32_t PyRandom::next_u32() {
    constexpr int      kShift = 397;
    constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpper = 0x80000000u, kLower = 0x7fffffffu;
    if (index_ >= kStateSize) {
        for (int i = 0; i < kStateSize; i++) {
            const uint32_t y = (state_[i] & kUpper) | (state_[(i + 1) % kStateSize] & kLower);
            state_[i] = state_[(i + kShift) % kStateSize] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
        }
        index_ = 0;
    }
    uint32_t y = state_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t PyRandom::getrandbits(int k) {
    // CPython fills 32-bit words from the least significant one; the last word keeps its top bits.
    if (k <= 0) {
        return 0;
    }
    if (k <= 32) {
        return next_u32() >> (32 - k);
    }
    const uint64_t low  = next_u32();
    const uint64_t high = next_u32() >> (64 - k);
    return low | (high << 32);
}

uint64_t PyRandom::randbelow(uint64_t n) {
    int bits = 0;  // n.bit_length()
    for (uint64_t m = n; m != 0; m >>= 1) {
        bits++;
    }
    uint64_t r = getrandbits(bits);
    while (r >= n) {
        r = getrandbits(bits);
    }
    return r;
}

void PyRandom::shuffle(std::vector<size_t> & items) {
    for (size_t i = items.size(); i-- > 1;) {
        const size_t j = randbelow(i + 1);
        std::swap(items[i], items[j]);
    }
}

std::vector<size_t> PyRandom::sample(size_t n, size_t k) {
    // CPython picks from a copied pool when a list of n is smaller than a set of k would be, and
    // by rejection of repeated indices otherwise; both consume the generator differently.
    uint64_t setsize = 21;  // a small set's size minus an empty list's, in CPython's accounting
    if (k > 5) {
        const double exponent = std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0));
        setsize += exponent >= 32 ? UINT64_MAX / 2 : uint64_t{1} << (2 * static_cast<int>(exponent));
    }
    std::vector<size_t> result(k);
    if (n <= setsize) {
        std::vector<size_t> pool(n);
        for (size_t i = 0; i < n; i++) {
            pool[i] = i;
        }
        for (size_t i = 0; i < k; i++) {
            const size_t j = randbelow(n - i);
            result[i]      = pool[j];
            pool[j]        = pool[n - i - 1];  // the last unpicked element fills the hole
        }
    } else {
        std::vector<char> selected(n, 0);
        for (size_t i = 0; i < k; i++) {
            size_t j = randbelow(n);
            while (selected[j]) {
                j = randbelow(n);
            }
            selected[j] = 1;
            result[i]   = j;
        }
    }
    return result;
}

}  // namespace paft
