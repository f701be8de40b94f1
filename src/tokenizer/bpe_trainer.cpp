#include "tokenizer/bpe_trainer.h"

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unordered_map>

namespace paft::tok {
namespace {

// The ByteLevel pre-tokenizer the written tokenizer.json names, built by the same code that
// encodes with it, so training sees exactly the pieces encoding will.
const PreTokenizer & byte_level_pre_tokenizer() {
    static const std::unique_ptr<PreTokenizer> pre = parse_pre_tokenizer(
        json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}},
        "pre_tokenizer", JsonReader("bpe_trainer"));
    return *pre;
}

// One distinct piece as symbol ids, and how often it occurs.
struct Word {
    std::vector<int32_t> symbols;
    uint64_t             count;
};

using Pair = std::pair<int32_t, int32_t>;

struct PairHash {
    size_t operator()(const Pair & p) const {
        return std::hash<uint64_t>()((static_cast<uint64_t>(p.first) << 32) | static_cast<uint32_t>(p.second));
    }
};

// The most frequent pair (count weighted by the words' counts); ties go to the smallest
// (left string, right string). Count 0 when no word has two symbols.
std::pair<Pair, uint64_t> best_pair(const std::vector<Word> & words, const std::vector<std::string> & vocab) {
    std::unordered_map<Pair, uint64_t, PairHash> counts;
    for (const Word & w : words) {
        for (size_t i = 0; i + 1 < w.symbols.size(); i++) {
            counts[{w.symbols[i], w.symbols[i + 1]}] += w.count;
        }
    }
    Pair     best{-1, -1};
    uint64_t best_count = 0;
    for (const auto & [pair, count] : counts) {
        const bool better =
            count > best_count ||
            (count == best_count && std::tie(vocab[pair.first], vocab[pair.second]) <
                                        std::tie(vocab[best.first], vocab[best.second]));
        if (better) {
            best       = pair;
            best_count = count;
        }
    }
    return {best, best_count};
}

// Replaces every occurrence of `pair` in the word (left to right, not overlapping) by `merged`.
void apply_merge(Word & w, Pair pair, int32_t merged) {
    std::vector<int32_t> out;
    out.reserve(w.symbols.size());
    for (size_t i = 0; i < w.symbols.size(); i++) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == pair.first && w.symbols[i + 1] == pair.second) {
            out.push_back(merged);
            i++;
        } else {
            out.push_back(w.symbols[i]);
        }
    }
    w.symbols = std::move(out);
}

}  // namespace

BpeTrainer::BpeTrainer(std::vector<std::string> special_tokens) : special_tokens_(std::move(special_tokens)) {}

void BpeTrainer::add_text(std::string_view text) {
    if (valid_utf8_prefix(text) != text.size()) {
        throw InputError(fmt::format("bpe_trainer: text is not valid UTF-8 at byte {}", valid_utf8_prefix(text)));
    }
    // The text between special tokens (encoding splits them out before pre-tokenizing), leftmost
    // first, the longest token at a position.
    std::vector<std::string> segments;
    size_t                   start = 0;
    while (start <= text.size()) {
        size_t found = std::string_view::npos, length = 0;
        for (const std::string & s : special_tokens_) {
            const size_t at = text.find(s, start);
            if (at != std::string_view::npos && (at < found || (at == found && s.size() > length))) {
                found  = at;
                length = s.size();
            }
        }
        const size_t end = found == std::string_view::npos ? text.size() : found;
        if (end > start) {
            segments.emplace_back(text.substr(start, end - start));
        }
        if (found == std::string_view::npos) {
            break;
        }
        start = found + length;
    }
    byte_level_pre_tokenizer().apply(segments, true);
    for (std::string & piece : segments) {
        piece_counts_[piece]++;
    }
}

TrainedBpe BpeTrainer::train(int vocab_size) const {
    TrainedBpe bpe;
    bpe.vocab         = special_tokens_;
    bpe.special_count = special_tokens_.size();
    if (vocab_size < (int) bpe.special_count + 256) {
        throw InputError(fmt::format("vocab_size {} is too small: the {} special tokens and 256 bytes need {}", vocab_size,
                                     bpe.special_count, bpe.special_count + 256));
    }
    std::unordered_map<std::string, int32_t> ids;
    for (size_t i = 0; i < bpe.vocab.size(); i++) {
        ids.emplace(bpe.vocab[i], (int32_t) i);
    }
    for (int b = 0; b < 256; b++) {
        std::string c;
        append_byte_level(c, std::string(1, static_cast<char>(b)));
        ids.emplace(c, (int32_t) bpe.vocab.size());
        bpe.vocab.push_back(c);
    }
    // Pieces as sequences of byte characters (each piece is byte-level text, so every character
    // is one of the 256).
    std::vector<Word> words;
    for (const auto & [piece, count] : piece_counts_) {
        Word w{{}, count};
        for (size_t i = 0; i < piece.size();) {
            const size_t start = i;
            next_code_point(piece, i);
            w.symbols.push_back(ids.at(piece.substr(start, i - start)));
        }
        words.push_back(std::move(w));
    }
    while ((int) bpe.vocab.size() < vocab_size) {
        const auto [pair, count] = best_pair(words, bpe.vocab);
        if (count < 2) {
            break;
        }
        const std::string merged = bpe.vocab[pair.first] + bpe.vocab[pair.second];
        auto [it, added]         = ids.emplace(merged, (int32_t) bpe.vocab.size());
        if (added) {
            bpe.vocab.push_back(merged);
        }
        bpe.merges.emplace_back(bpe.vocab[pair.first], bpe.vocab[pair.second]);
        for (Word & w : words) {
            apply_merge(w, pair, it->second);
        }
    }
    return bpe;
}

std::string bpe_tokenizer_json(const TrainedBpe & bpe) {
    using ojson         = nlohmann::ordered_json;
    ojson added_tokens  = ojson::array();
    for (size_t i = 0; i < bpe.special_count; i++) {
        added_tokens.push_back(ojson{{"id", i},
                                     {"content", bpe.vocab[i]},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}});
    }
    ojson vocab = ojson::object();
    for (size_t i = 0; i < bpe.vocab.size(); i++) {
        vocab[bpe.vocab[i]] = i;
    }
    // "left right": byte-level strings hold no spaces, so the old one-string form is unambiguous
    // and every reader accepts it.
    ojson merges = ojson::array();
    for (const auto & [left, right] : bpe.merges) {
        merges.push_back(left + " " + right);
    }
    const ojson byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    const ojson doc = {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added_tokens},
        {"normalizer", nullptr},
        {"pre_tokenizer", byte_level},
        {"post_processor", nullptr},
        {"decoder", byte_level},
        {"model",
         {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"vocab", vocab},
          {"merges", merges}}},
    };
    return doc.dump(2) + "\n";
}

}  // namespace paft::tok
