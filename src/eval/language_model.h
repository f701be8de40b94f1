// What evaluation tasks ask of a language model, in lm-evaluation-harness's terms: the
// log-likelihood of a continuation given a context, and greedy generation until a stop string.
// Tasks build these requests from strings; the model side tokenizes and computes them
// (ModelLanguageModel over the Decoder; tests use a stand-in with a known formula).
#pragma once

#include <string>
#include <vector>

namespace paft {

struct LoglikelihoodRequest {
    std::string context;       // may be empty (then the model scores after its EOS token)
    std::string continuation;  // non-empty; a word boundary's space belongs here (" Paris")
};

struct Loglikelihood {
    double logprob   = 0.0;    // sum of log p(continuation token | everything before it), nats
    bool   is_greedy = false;  // every continuation token is the argmax of its position's logits
};

struct GreedyRequest {
    std::string              context;
    std::vector<std::string> until;              // the text is cut at the first occurrence of any
    int                      max_gen_toks = 256;  // new tokens at most
};

class LanguageModel {
public:
    virtual ~LanguageModel() = default;
    // One result per request, in the order given. Implementations may reorder and group requests
    // internally (e.g. to compute a shared context once); results do not depend on that.
    virtual std::vector<Loglikelihood> loglikelihood(const std::vector<LoglikelihoodRequest> & requests) = 0;
    // The greedy continuation of each context (special tokens dropped), cut at the first `until`.
    virtual std::vector<std::string>   greedy_until(const std::vector<GreedyRequest> & requests) = 0;
};

}  // namespace paft
