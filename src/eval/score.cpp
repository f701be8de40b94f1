#include "eval/score.h"

#include "io/nonfinite.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace paft {

double SequenceScore::perplexity() const {
    return tokens > 0 ? std::exp(-logprob / tokens) : std::numeric_limits<double>::quiet_NaN();
}

std::vector<SequenceScore> score_sequences(ParallelTransformer & transformer, const LoraAdapter * adapter,
                                           const std::vector<std::vector<int32_t>> & rows, int batch_size,
                                           bool per_token, const std::function<void(long)> & on_progress) {
    const int                  vocab = transformer.model().config().vocab_size;
    std::vector<SequenceScore> scores(rows.size());
    for (size_t first = 0; first < rows.size(); first += batch_size) {
        size_t last = std::min(rows.size(), first + (size_t) batch_size);
        std::vector<std::vector<int32_t>> chunk(rows.begin() + first, rows.begin() + last);
        Batch                      batch = batch_from_rows(chunk, nullptr, 0, false, vocab);
        const std::vector<float> & logp  = transformer.forward(batch, adapter);
        for (size_t i = 0; i < chunk.size(); i++) {
            SequenceScore & s = scores[first + i];
            s.tokens          = std::max(0, (int) chunk[i].size() - 1);
            size_t nonfinite = 0;
            for (int t = 0; t < s.tokens; t++) {
                float lp = logp[i * batch.T + t];  // position t predicts token t+1
                s.logprob += lp;
                nonfinite += std::isfinite(lp) ? 0 : 1;
                if (per_token) {
                    s.token_logprobs.push_back(lp);
                }
            }
            check_finite_result(nonfinite, fmt::format("sequence {}: token log-probabilities", first + i + 1));
        }
        if (on_progress) {
            on_progress((long) last);
        }
    }
    return scores;
}

}  // namespace paft
