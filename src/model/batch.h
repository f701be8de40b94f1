// A batch of token sequences laid out [B, T], with Hugging Face's conventions: attention_mask
// 1 for real tokens, position_ids counting real tokens from 0, labels -100 where no loss is taken.
#pragma once

#include <cstdint>
#include <vector>

namespace paft {

constexpr int32_t kIgnoreIndex = -100;  // Hugging Face's "no label"

struct Batch {
    int                  B = 0, T = 0;
    std::vector<int32_t> input_ids;       // [B*T]
    std::vector<int32_t> attention_mask;  // [B*T] 1 = real token, 0 = padding
    std::vector<int32_t> position_ids;    // [B*T]
    std::vector<int32_t> targets;         // [B*T] token predicted at each position (labels shifted left), -1 = none
    // [B*T] or empty: in rows that pack several examples, the position (within the row) where the
    // example holding each position starts; attention never reaches before it. Empty = 0.
    std::vector<int32_t> doc_start;
    int                  tokens() const { return B * T; }
    int                  target_count() const;  // positions with a target
};

// Builds a batch from [B*T] arrays. `labels` as in Hugging Face (target at position t is
// labels[t+1]; -100 = ignored); empty `position_ids` means cumsum(attention_mask) - 1 with pads at 1
// (what transformers' generate uses). Throws InputError when a token id is outside [0, vocab).
Batch batch_from_arrays(int B, int T, std::vector<int32_t> input_ids, std::vector<int32_t> attention_mask,
                        std::vector<int32_t> position_ids, const std::vector<int32_t> & labels, int vocab_size);

// Pads rows of different lengths to the longest (on the right, or the left) with `pad_id`;
// labels are the ids themselves (every next token scored) unless `labels` rows are given.
Batch batch_from_rows(const std::vector<std::vector<int32_t>> & rows, const std::vector<std::vector<int32_t>> * labels,
                      int pad_id, bool pad_left, int vocab_size);

// InputError unless B, T > 0, every array holds B*T entries (doc_start may be empty), and ids and targets lie in [0, vocab).
void check_batch(const Batch & batch, int vocab_size);

// d(mean negative log-likelihood)/d(logp): -1/count at positions with a target, else 0.
std::vector<float> mean_nll_gradient(const Batch & batch);

}  // namespace paft
