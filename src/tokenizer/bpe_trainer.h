// A small byte-level BPE trainer in GPT-2's manner, for tokenizers of made-up worlds (paft synth).
// Texts are cut around the special tokens, pre-tokenized by the ByteLevel pre-tokenizer's split
// (GPT-2's regex, no prefix space), and each piece's bytes become GPT-2's byte characters. Then,
// over the distinct pieces weighted by their counts, the most frequent adjacent pair of symbols is
// merged again and again (ties: the pair whose left, then right, string is smallest bytewise)
// until the vocabulary is full or no pair occurs twice. Deterministic: the result depends only on
// the multiset of texts.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paft::tok {

struct TrainedBpe {
    // Token strings by id: the special tokens, the 256 byte characters in byte order, then each
    // merge's result in merge order (a result already in the vocabulary keeps its id).
    std::vector<std::string>                         vocab;
    std::vector<std::pair<std::string, std::string>> merges;  // in rank order
    size_t                                           special_count = 0;  // vocab[0 .. special_count)
};

class BpeTrainer {
public:
    // `special_tokens` get ids 0, 1, ... in this order and are never split or merged.
    explicit BpeTrainer(std::vector<std::string> special_tokens);

    // Counts the pre-tokenized pieces of `text` (valid UTF-8; InputError otherwise).
    void add_text(std::string_view text);

    // Merges until the vocabulary has `vocab_size` tokens or no pair occurs twice. InputError when
    // vocab_size cannot hold the special tokens and the 256 bytes.
    TrainedBpe train(int vocab_size) const;

private:
    std::vector<std::string>        special_tokens_;
    std::map<std::string, uint64_t> piece_counts_;  // byte-level piece -> occurrences
};

// tokenizer.json for `bpe` as Hugging Face tokenizers writes it: the special tokens as added
// special tokens, ByteLevel pre-tokenizer (no prefix space) and decoder, no normalizer and no
// post-processor (encode adds no BOS/EOS), model BPE with its vocabulary and merges.
std::string bpe_tokenizer_json(const TrainedBpe & bpe);

}  // namespace paft::tok
