// Text generation over the Decoder, as transformers' generate() does it: greedy decoding or
// sampling (temperature, top-k, top-p, min-p, applied in that order), stop strings, EOS, a limit
// on new tokens, with a key/value cache per sequence and several sequences decoded together.
#pragma once

#include "model/inference.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace paft {

struct SamplingOptions {
    double   temperature = 0.0;  // 0: greedy (argmax; ties to the lowest id, as torch.argmax)
    int      top_k       = 0;    // 0: off
    double   top_p       = 1.0;  // 1: off
    double   min_p       = 0.0;  // 0: off
    uint64_t seed        = 0;    // sampling draws depend on (seed, sequence index, step) only
};

struct GenerationOptions {
    SamplingOptions          sampling;
    int                      max_new_tokens = 256;
    std::vector<std::string> stop;     // the text is cut before the first occurrence of any; generation stops
    std::vector<int32_t>     eos_ids;  // generation stops after any of these (not part of the text)
};

struct Generation {
    std::vector<int32_t> tokens;         // generated ids, EOS included when it ended the generation
    std::string          text;           // decoded without special tokens, cut at the first stop string
    std::string          finish_reason;  // "stop" (stop string or EOS) or "length"
};

// Streaming: called with the index of the prompt and the new text as soon as it is final (no
// partial UTF-8 character, nothing that could still turn out to be the start of a stop string).
using TextCallback = std::function<void(size_t prompt, const std::string & text)>;

// Generates a continuation of each prompt (token ids, non-empty), `batch` prompts at a time.
// `on_done(i)` after prompt i finishes (progress). Deterministic for given inputs, options, batch
// size and threads; sampled draws do not depend on the batch size (logits may differ in the last
// bits between batch sizes, as the products' blocking changes).
std::vector<Generation> generate(Decoder & decoder, const Tokenizer & tokenizer,
                                 const std::vector<std::vector<int32_t>> & prompts,
                                 const GenerationOptions & options, int batch,
                                 const TextCallback & on_text = {},
                                 const std::function<void(size_t)> & on_done = {});

}  // namespace paft
