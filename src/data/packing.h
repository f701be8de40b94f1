// Packing SFT examples into rows of at most max_length tokens, as TRL's packing_strategy="bfd":
// best-fit decreasing bin packing; position ids restart at 0 for every example, the first token
// of each example is not a label (it is never predicted from the example before it), and the
// engine keeps attention inside each example (Batch::doc_start).
#pragma once

#include "data/dataset.h"
#include "model/batch.h"

#include <cstdint>
#include <vector>

namespace paft {

struct PackedRow {
    std::vector<int32_t> input_ids, labels, position_ids;  // [n]
    std::vector<int32_t> seq_lengths;                      // tokens of each example, in order
    std::vector<size_t>  examples;                         // indices into the packed examples
};

// Examples longer than max_length are cut to it first (TRL drops the overflow). Deterministic:
// longest first (ties in input order), each into the fullest row it fits, ties to the earliest row.
std::vector<PackedRow> pack_examples(const std::vector<SftExample> & examples, int max_length);

// The rows as one right-padded batch with doc_start set, so no example attends to another.
Batch batch_from_packed(const std::vector<PackedRow> & rows, int pad_id, int vocab_size);

}  // namespace paft
