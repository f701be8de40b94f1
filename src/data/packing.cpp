#include "data/packing.h"

#include "core/error.h"
#include "model/batch.h"

#include <algorithm>
#include <numeric>
#include <set>

namespace paft {

std::vector<PackedRow> pack_examples(const std::vector<SftExample> & examples, int max_length) {
    if (max_length <= 0) {
        throw InputError("packing needs a positive max_length");
    }
    auto length = [&](size_t i) { return (int) std::min<size_t>(examples[i].input_ids.size(), max_length); };
    std::vector<size_t> order(examples.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return length(a) > length(b); });

    std::vector<PackedRow>        rows;
    std::set<std::pair<int, int>> space;  // (free tokens, row): the best fit is the first with enough room
    for (size_t i : order) {
        const int n  = length(i);
        auto      it = space.lower_bound({n, -1});
        int       row;
        if (it == space.end()) {
            row = (int) rows.size();
            rows.emplace_back();
        } else {
            row = it->second;
            space.erase(it);
        }
        PackedRow &          r  = rows[row];
        const SftExample &   ex = examples[i];
        r.input_ids.insert(r.input_ids.end(), ex.input_ids.begin(), ex.input_ids.begin() + n);
        r.labels.insert(r.labels.end(), ex.labels.begin(), ex.labels.begin() + n);
        r.labels[r.labels.size() - n] = kIgnoreIndex;
        for (int p = 0; p < n; p++) {
            r.position_ids.push_back(p);
        }
        r.seq_lengths.push_back(n);
        r.examples.push_back(i);
        const int left = max_length - (int) r.input_ids.size();
        if (left > 0) {
            space.insert({left, row});
        }
    }
    return rows;
}

Batch batch_from_packed(const std::vector<PackedRow> & rows, int pad_id, int vocab_size) {
    std::vector<std::vector<int32_t>> ids, labels;
    for (const PackedRow & r : rows) {
        ids.push_back(r.input_ids);
        labels.push_back(r.labels);
    }
    Batch batch = batch_from_rows(ids, &labels, pad_id, false, vocab_size);
    batch.doc_start.assign(batch.input_ids.size(), 0);
    for (size_t b = 0; b < rows.size(); b++) {
        int32_t * starts = batch.doc_start.data() + b * batch.T;
        int32_t   at     = 0;
        for (int32_t n : rows[b].seq_lengths) {
            std::fill(starts + at, starts + at + n, at);
            std::copy(rows[b].position_ids.begin() + at, rows[b].position_ids.begin() + at + n,
                      batch.position_ids.begin() + b * batch.T + at);
            at += n;
        }
    }
    return batch;
}

}  // namespace paft
