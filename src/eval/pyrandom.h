// CPython's random.Random, bit for bit: the Mersenne Twister (MT19937) seeded from an integer
// as random.seed(int) does, getrandbits, _randbelow, shuffle and sample. lm-evaluation-harness
// shuffles the evaluated documents and draws few-shot examples with it, so reproducing its
// prompts needs the same generator, not just a good one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace paft {

class PyRandom {
public:
    // random.Random(seed) for a non-negative integer seed.
    explicit PyRandom(uint64_t seed);

    // The next 32 random bits (CPython's genrand_uint32).
    uint32_t next_u32();
    // random.getrandbits(k), 0 <= k <= 64.
    uint64_t getrandbits(int k);
    // random._randbelow(n): uniform in [0, n), n > 0, by rejection on n.bit_length() bits.
    uint64_t randbelow(uint64_t n);
    // random.shuffle(items) applied to `items` (Fisher-Yates from the end).
    void shuffle(std::vector<size_t> & items);
    // random.sample(range(n), k): the indices of the k elements random.sample(population, k)
    // picks from a population of n, in the order it returns them. k <= n.
    std::vector<size_t> sample(size_t n, size_t k);

private:
    static constexpr int kStateSize = 624;
    void init_genrand(uint32_t s);
    void init_by_array(const std::vector<uint32_t> & key);

    uint32_t state_[kStateSize];
    int      index_ = kStateSize;  // next word of state_ to temper; kStateSize: regenerate first
};

}  // namespace paft
