// Choosing the next token from a row of logits, with transformers' rules: greedy argmax, or the
// logits warpers applied in transformers' order (temperature, top-k, top-p, min-p) and a draw
// from the softmax of the tokens they keep.
//
// The draw uses paft's counter-based generator keyed by (seed, sequence, step), not torch's
// generator: the same seed gives the same tokens in paft whatever the batch size, but not the
// tokens torch would draw.
#pragma once

#include <cstdint>
#include <vector>

namespace paft {

struct SamplingOptions {
    double   temperature = 0.0;  // 0: greedy (argmax; ties to the lowest id, as torch.argmax)
    int      top_k       = 0;    // 0: off
    double   top_p       = 1.0;  // 1: off
    double   min_p       = 0.0;  // 0: off
    uint64_t seed        = 0;    // sampling draws depend on (seed, sequence index, step) only
};

// InputError naming the option (temperature, top-k, top-p, min-p) when a value is out of range:
// temperature < 0, top_k < 0, top_p outside (0, 1], min_p outside [0, 1].
void check_sampling_options(const SamplingOptions & options);

// The token with the largest logit; ties go to the lowest id (torch.argmax). V = vocabulary.
int32_t argmax_token(const float * logits, int V);

// The tokens the warpers keep, in increasing id order, with their probabilities (the softmax of
// their temperature-scaled logits, renormalised over the kept tokens; they sum to 1).
struct TokenDistribution {
    std::vector<int32_t> ids;
    std::vector<double>  probs;
};

// Applies temperature (> 0), top-k, top-p and min-p to logits [V], as transformers'
// TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper and MinPLogitsWarper do with
// min_tokens_to_keep = 1 (computed in double from the f32 logits):
//   temperature  x / T
//   top-k        keeps the tokens whose x >= the k-th largest x (ties at the boundary are kept)
//   top-p        sorts the kept tokens by x ascending (ties by id), removes those whose cumulative
//                softmax is <= 1 - top_p, always keeps the largest
//   min-p        removes the tokens whose probability is < min_p * the largest probability
TokenDistribution sampling_distribution(const float * logits, int V, const SamplingOptions & options);

// A draw from `dist`: u uniform in [0, 1) from hash(seed, sequence, step), then the first kept
// token (by id) whose cumulative probability exceeds u. Never returns a token of probability 0.
int32_t draw_token(const TokenDistribution & dist, uint64_t seed, uint64_t sequence, uint64_t step);

// Greedy when options.temperature == 0, else a draw from sampling_distribution.
int32_t choose_token(const float * logits, int V, const SamplingOptions & options, uint64_t sequence,
                     uint64_t step);

}  // namespace paft
