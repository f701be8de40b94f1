// A small deterministic random generator (SplitMix64 seeding a xoshiro256** state), so that
// initialisation, dropout and sampling give the same numbers for the same seed everywhere.
#pragma once

#include <cstdint>

namespace paft {

class Random {
public:
    explicit Random(uint64_t seed);
    uint64_t next_u64();
    float    uniform();  // [0, 1), 24 random bits
    float    normal();   // standard normal (Box-Muller)

private:
    uint64_t s_[4];
    bool     has_spare_ = false;
    float    spare_     = 0.0f;
};

// A stateless hash of (seed, a, b), for random numbers that must not depend on thread order.
uint64_t hash_u64(uint64_t seed, uint64_t a, uint64_t b);

}  // namespace paft
