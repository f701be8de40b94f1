#include "model/batch.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>

namespace paft {

int Batch::target_count() const {
    return (int) std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
}

Batch batch_from_arrays(int B, int T, std::vector<int32_t> input_ids, std::vector<int32_t> attention_mask,
                        std::vector<int32_t> position_ids, const std::vector<int32_t> & labels, int vocab_size) {
    const size_t N = (size_t) B * T;
    if (input_ids.size() != N || attention_mask.size() != N || labels.size() != N ||
        (!position_ids.empty() && position_ids.size() != N)) {
        throw InputError(fmt::format("batch arrays must all have B*T = {} entries", N));
    }
    Batch batch{B, T, std::move(input_ids), std::move(attention_mask), std::move(position_ids), std::vector<int32_t>(N), {}};
    for (size_t n = 0; n < N; n++) {
        if (batch.input_ids[n] < 0 || batch.input_ids[n] >= vocab_size) {
            throw InputError(fmt::format("token id {} at row {}, position {} is outside the vocabulary [0, {})",
                                         batch.input_ids[n], n / T, n % T, vocab_size));
        }
    }
    for (size_t n = 0; n < N; n++) {
        int32_t next = n % T + 1 < (size_t) T ? labels[n + 1] : kIgnoreIndex;
        if (next != kIgnoreIndex && (next < 0 || next >= vocab_size)) {
            throw InputError(fmt::format("label {} at row {}, position {} is outside the vocabulary [0, {})", next,
                                         (n + 1) / T, (n + 1) % T, vocab_size));
        }
        batch.targets[n] = next == kIgnoreIndex ? -1 : next;
    }
    if (batch.position_ids.empty()) {
        batch.position_ids.resize(N);
        for (int b = 0; b < B; b++) {
            int32_t count = 0;
            for (int t = 0; t < T; t++) {
                size_t n              = (size_t) b * T + t;
                count += batch.attention_mask[n] ? 1 : 0;
                batch.position_ids[n] = batch.attention_mask[n] ? count - 1 : 1;
            }
        }
    }
    return batch;
}

Batch batch_from_rows(const std::vector<std::vector<int32_t>> & rows, const std::vector<std::vector<int32_t>> * labels,
                      int pad_id, bool pad_left, int vocab_size) {
    const int B = (int) rows.size();
    if (labels && (labels->size() != rows.size())) {
        throw InputError("labels must have one row per sequence");
    }
    for (int b = 0; labels && b < B; b++) {
        if ((*labels)[b].size() != rows[b].size()) {
            throw InputError(fmt::format("row {}: {} labels for {} tokens", b, (*labels)[b].size(), rows[b].size()));
        }
    }
    int T = 0;
    for (const auto & r : rows) {
        T = std::max(T, (int) r.size());
    }
    std::vector<int32_t> ids((size_t) B * T, pad_id), mask((size_t) B * T, 0), lab((size_t) B * T, kIgnoreIndex);
    for (int b = 0; b < B; b++) {
        const auto & row   = rows[b];
        int          start = pad_left ? T - (int) row.size() : 0;
        for (size_t i = 0; i < row.size(); i++) {
            size_t n = (size_t) b * T + start + i;
            ids[n]   = row[i];
            mask[n]  = 1;
            lab[n]   = labels ? (*labels)[b][i] : row[i];
        }
    }
    return batch_from_arrays(B, T, std::move(ids), std::move(mask), {}, lab, vocab_size);
}

void check_batch(const Batch & batch, int vocab_size) {
    const size_t count = (size_t) batch.B * batch.T;
    if (batch.B <= 0 || batch.T <= 0 || batch.input_ids.size() != count || batch.attention_mask.size() != count ||
        batch.position_ids.size() != count || batch.targets.size() != count ||
        (!batch.doc_start.empty() && batch.doc_start.size() != count)) {
        throw InputError("empty or malformed batch: every array must hold B*T entries");
    }
    for (size_t n = 0; n < count; n++) {
        if (batch.input_ids[n] < 0 || batch.input_ids[n] >= vocab_size || batch.targets[n] >= vocab_size) {
            throw InputError("batch: token id or target outside the vocabulary");
        }
        if (!batch.doc_start.empty() && (batch.doc_start[n] < 0 || (size_t) batch.doc_start[n] > n % batch.T)) {
            throw InputError("batch: an example starts after its own position (doc_start)");
        }
    }
}

std::vector<float> mean_nll_gradient(const Batch & batch) {
    int                count = batch.target_count();
    std::vector<float> g(batch.targets.size(), 0.0f);
    for (size_t n = 0; n < g.size(); n++) {
        g[n] = batch.targets[n] >= 0 ? -1.0f / (float) count : 0.0f;
    }
    return g;
}

}  // namespace paft
