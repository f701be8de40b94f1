// Text generation over the Decoder, as transformers' generate() does it: greedy decoding or
// sampling (temperature, top-k, top-p, min-p, applied in that order; eval/sampling.h), stop
// strings, EOS, a limit on new tokens, with a key/value cache per sequence and several sequences
// decoded together.
//
// Batching is continuous: up to `batch` sequences are active; each step is one Decoder::forward
// over all of them (a sequence that just joined runs its whole prompt, the others their last
// token), finished sequences leave and the next prompts join in order.
//
// Like transformers, nothing refuses prompt + max_new_tokens beyond the model's
// max_position_embeddings (the positions just keep going); callers may warn.
#pragma once

#include "core/communicator.h"
#include "eval/sampling.h"
#include "model/inference.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace paft {

struct GenerationOptions {
    SamplingOptions          sampling;
    int                      max_new_tokens = 256;
    std::vector<std::string> stop;     // the text is cut before the first occurrence of any; generation stops
    std::vector<int32_t>     eos_ids;  // generation stops after any of these (not part of the text)
    // Prompt i's sampling draws are keyed by first_index + i: a run over records [k, n) of a
    // dataset (resumed, or one rank's share) draws as a run over all of them does.
    uint64_t first_index = 0;
};

struct Generation {
    std::vector<int32_t> tokens;         // generated ids, EOS included when it ended the generation
    std::string          text;           // decoded without special tokens (and without the EOS that
                                         // ended it), cut at the first stop string
    std::string          finish_reason;  // "stop" (stop string or EOS) or "length"
};

// Streaming: called with the index of the prompt and the new text as soon as it is final (no
// partial UTF-8 character, nothing that could still turn out to be the start of a stop string).
// The pieces of one prompt concatenate to its Generation::text.
using TextCallback = std::function<void(size_t prompt, const std::string & text)>;
// Called when prompt i is finished (in the order they finish).
using DoneCallback = std::function<void(size_t prompt, const Generation & generation)>;

// Generates a continuation of each prompt (token ids, non-empty, each below the model's
// vocabulary: else InputError naming the prompt), `batch` prompts at a time. Deterministic for
// given inputs, options, batch size and threads; sampled draws do not depend on the batch size
// (logits may differ in the last bits between batch sizes, as the products' blocking changes).
std::vector<Generation> generate(Decoder & decoder, const Tokenizer & tokenizer,
                                 const std::vector<std::vector<int32_t>> & prompts,
                                 const GenerationOptions & options, int batch,
                                 const TextCallback & on_text = {}, const DoneCallback & on_done = {});

// generate() with the prompts shared among `ranks` (null or one rank: generate() itself): rank r
// generates prompts [n r / N, n (r + 1) / N) (keyed by their index here, so sampled draws are one
// process's) in its own batches, and every rank returns every Generation. `on_done` sees this
// rank's prompts (their indices here). Batches differ from one process's, which can move a logit
// in its last bits, as another `batch` can.
std::vector<Generation> generate_shared(Decoder & decoder, const Tokenizer & tokenizer,
                                        const std::vector<std::vector<int32_t>> & prompts,
                                        const GenerationOptions & options, int batch, Communicator * ranks,
                                        const DoneCallback & on_done = {});

// The ids that end a generation for the model in DIR: the tokenizer's eos_token and the
// eos_token_id of DIR/config.json and DIR/generation_config.json (an id or a list of ids; either
// file may be missing). transformers stops at generation_config's ids; the union also covers
// models whose files disagree.
std::vector<int32_t> model_eos_ids(const std::string & model_dir, const Tokenizer & tokenizer);

// One conversation generated turn after turn (paft chat), keeping its key/value cache: each call
// gets the whole conversation so far as its prompt, and the positions that prompt shares with the
// tokens already in the cache (the previous prompt and generation) are not computed again.
class ConversationGenerator {
public:
    ConversationGenerator(Decoder & decoder, const Tokenizer & tokenizer);

    // `turn` keys the sampling draws (as the prompt index does in generate()).
    Generation generate(const std::vector<int32_t> & prompt, const GenerationOptions & options, uint64_t turn,
                        const std::function<void(const std::string &)> & on_text = {});
    void       reset();  // forgets the cache
    int        reused_tokens() const { return reused_; }  // prompt tokens the last call took from the cache

private:
    Decoder &            decoder_;
    const Tokenizer &    tokenizer_;
    KvCache              cache_;
    std::vector<int32_t> cached_;  // the tokens whose keys and values cache_ holds
    int                  reused_ = 0;
};

}  // namespace paft
