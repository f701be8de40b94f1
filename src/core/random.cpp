#include "core/random.h"

#include <cmath>

namespace paft {
namespace {

uint64_t splitmix64(uint64_t & x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

}  // namespace

Random::Random(uint64_t seed) {
    for (uint64_t & s : s_) {
        s = splitmix64(seed);
    }
}

uint64_t Random::next_u64() {
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t      = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

float Random::uniform() {
    return (float) (next_u64() >> 40) * (1.0f / 16777216.0f);
}

float Random::normal() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    double u1 = ((double) (next_u64() >> 11) + 1.0) * (1.0 / 9007199254740992.0);  // (0, 1]
    double u2 = (double) (next_u64() >> 11) * (1.0 / 9007199254740992.0);
    double r  = std::sqrt(-2.0 * std::log(u1));
    spare_     = (float) (r * std::sin(2.0 * M_PI * u2));
    has_spare_ = true;
    return (float) (r * std::cos(2.0 * M_PI * u2));
}

uint64_t hash_u64(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t x = seed ^ (a * 0xD6E8FEB86659FD93ull) ^ (b * 0xA0761D6478BD642Full);
    return splitmix64(x);
}

}  // namespace paft
