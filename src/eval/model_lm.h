// The LanguageModel of a real model: lm-evaluation-harness's tokenization and scoring (the
// hf-causal-experimental model at the Open LLM Leaderboard's commit b281b09) over the Decoder.
//
// Tokenization of a (context, continuation) pair: trailing whitespace of the context moves to
// the start of the continuation; whole = encode(context + continuation), context_enc =
// encode(context), continuation_enc = whole[len(context_enc):] (BPE merges across the boundary
// count, as the harness's _encode_pair). An empty context becomes [EOS] ([BOS] with special
// tokens). The model sees (context_enc + continuation_enc)[-(max_length + 1):][:-1].
//
// Speed without changing the numbers: requests are sorted by their tokens and walked depth first,
// so a prefix shared with the previous request (the few-shot block, the question all choices
// continue) is computed once in a "trunk" key/value cache; the requests that continue the same
// context then run their own tokens together in one forward pass, each over the trunk.
//
// Across MPI ranks (ModelLmOptions::ranks): every rank tokenizes and plans all the requests, then
// computes a contiguous run of the depth-first groups (balanced by tokens computed). A rank whose
// run starts in the middle first rebuilds the trunk as one process would have it there, with the
// same forward passes over the same tokens, so every log-likelihood has the bits one process
// gives it (with the same kernels: the forward's results do not depend on the thread count).
// Greedy generations are split in contiguous runs too; their batches then differ from one
// process's, which can move logits in the last bits (as a different --batch can): a text changes
// only where two tokens tie to within that. Every rank ends with every answer.
#pragma once

#include "core/communicator.h"
#include "eval/language_model.h"
#include "model/inference.h"
#include "tokenizer/tokenizer.h"

#include <functional>
#include <memory>

namespace paft {

struct ModelLmOptions {
    // Encode with the tokenizer's special tokens (BOS for Llama/Mistral), as the current harness
    // does; the leaderboard's commit encoded without them (false).
    bool add_special_tokens = false;
    int  max_length         = 0;  // tokens the model sees at most; 0: config.json max_position_embeddings
    int  generation_batch   = 8;  // greedy_until: contexts decoded together
    // greedy_until stops at these ids (model_eos_ids: the model folder's and the tokenizer's);
    // empty: the tokenizer's EOS and config.json's first eos_token_id.
    std::vector<int32_t> eos_ids;
    // Progress: called with (requests done, requests in this call) now and then; across ranks,
    // this rank's share.
    std::function<void(long, long)> on_progress;
    // The ranks that share the requests (every rank calls with the same requests); null: this
    // process alone.
    Communicator * ranks = nullptr;
};

// Counts for the closing report and the benchmark: tokens the requests hold (every request's
// model input, as the harness computes them one by one) and tokens the decoder actually ran.
struct ScoringStats {
    long requests        = 0;
    long request_tokens  = 0;
    long computed_tokens = 0;
};

class ModelLanguageModel : public LanguageModel {
public:
    ModelLanguageModel(Backend & backend, AdaptedModel model, const Tokenizer & tokenizer,
                       ModelLmOptions options);

    std::vector<Loglikelihood> loglikelihood(const std::vector<LoglikelihoodRequest> & requests) override;
    std::vector<std::string>   greedy_until(const std::vector<GreedyRequest> & requests) override;

    int                  max_length() const { return max_length_; }
    const ScoringStats & stats() const { return stats_; }

    // The harness's token pair of one request (context_enc, continuation_enc), before truncation.
    std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const LoglikelihoodRequest & request) const;

private:
    Decoder           decoder_;
    const Tokenizer & tokenizer_;
    ModelLmOptions    options_;
    int               max_length_;
    ScoringStats      stats_;
};

}  // namespace paft
