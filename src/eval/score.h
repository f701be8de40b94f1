// Scoring token sequences: the log-probability of each token given the ones before it.
#pragma once

#include "model/lora.h"
#include "model/parallel.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace paft {

struct SequenceScore {
    double             logprob = 0.0;   // sum over tokens 2..n of log p(token | previous), nats
    int                tokens  = 0;     // n - 1 scored tokens
    std::vector<float> token_logprobs;  // [n - 1] when asked for
    double             perplexity() const;  // exp(-logprob / tokens); NaN when tokens == 0
};

// Scores `rows` in batches of `batch_size` (right-padded); `on_progress(done)` after each batch.
std::vector<SequenceScore> score_sequences(ParallelTransformer & transformer, const LoraAdapter * adapter,
                                           const std::vector<std::vector<int32_t>> & rows, int batch_size,
                                           bool per_token, const std::function<void(long)> & on_progress = {});

}  // namespace paft
