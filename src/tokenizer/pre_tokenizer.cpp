#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/pattern.h"
#include "core/utf8.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace paft::tok {
namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

// What Split does with each match (the names of tokenizers' SplitDelimiterBehavior).
enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct Span {
    size_t begin, end;
    bool   is_match;
};

// `text` cut at the matches: matches and the gaps between them, in order, none empty.
std::vector<Span> spans(std::string_view text, const Ranges & matches) {
    std::vector<Span> out;
    size_t            last = 0;
    for (const auto & [b, e] : matches) {
        if (b > last) {
            out.push_back({last, b, false});
        }
        out.push_back({b, e, true});
        last = e;
    }
    if (last < text.size()) {
        out.push_back({last, text.size(), false});
    }
    return out;
}

// Groups spans into pieces as `behavior` says (the folds of tokenizers' NormalizedString::split).
std::vector<Span> group(const std::vector<Span> & in, Behavior behavior) {
    std::vector<Span> out;
    bool              previous_match = false;
    switch (behavior) {
    case Behavior::Removed:
        for (const Span & s : in) {
            if (!s.is_match) {
                out.push_back(s);
            }
        }
        break;
    case Behavior::Isolated:
        out = in;
        break;
    case Behavior::MergedWithPrevious:
        for (const Span & s : in) {
            if (s.is_match && !previous_match && !out.empty()) {
                out.back().end = s.end;
            } else {
                out.push_back(s);
            }
            previous_match = s.is_match;
        }
        break;
    case Behavior::MergedWithNext:
        for (auto it = in.rbegin(); it != in.rend(); ++it) {
            if (it->is_match && !previous_match && !out.empty()) {
                out.back().begin = it->begin;
            } else {
                out.push_back(*it);
            }
            previous_match = it->is_match;
        }
        std::reverse(out.begin(), out.end());
        break;
    case Behavior::Contiguous:
        for (const Span & s : in) {
            if (s.is_match && previous_match && !out.empty()) {
                out.back().end = s.end;
            } else {
                out.push_back(s);
            }
            previous_match = s.is_match;
        }
        break;
    }
    return out;
}

void split_pieces(std::vector<std::string> & pieces, const Pattern & pattern, Behavior behavior) {
    thread_local Ranges      matches;
    std::vector<std::string> out;
    out.reserve(pieces.size() * 4);
    for (std::string & piece : pieces) {
        matches.clear();
        pattern.find_all(piece, matches);
        if (matches.empty()) {
            out.push_back(std::move(piece));
        } else if (behavior == Behavior::Isolated) {
            // The common case, without building the spans: gaps and matches in order.
            size_t last = 0;
            for (const auto & [b, e] : matches) {
                if (b > last) {
                    out.emplace_back(piece, last, b - last);
                }
                out.emplace_back(piece, b, e - b);
                last = e;
            }
            if (last < piece.size()) {
                out.emplace_back(piece, last, piece.size() - last);
            }
        } else {
            for (const Span & s : group(spans(piece, matches), behavior)) {
                out.emplace_back(piece, s.begin, s.end - s.begin);
            }
        }
    }
    pieces = std::move(out);
}

class Split : public PreTokenizer {
public:
    Split(Pattern pattern, Behavior behavior) : pattern_(std::move(pattern)), behavior_(behavior) {}
    void apply(std::vector<std::string> & pieces, bool) const override { split_pieces(pieces, pattern_, behavior_); }

private:
    Pattern  pattern_;
    Behavior behavior_;
};

// GPT-2's split pattern, which ByteLevel applies when use_regex is set.
constexpr const char * kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
public:
    ByteLevel(bool add_prefix_space, std::optional<Pattern> regex) : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
    void apply(std::vector<std::string> & pieces, bool) const override {
        if (add_prefix_space_) {
            for (std::string & piece : pieces) {
                if (piece.empty() || piece[0] != ' ') {
                    piece.insert(piece.begin(), ' ');
                }
            }
        }
        if (regex_) {
            split_pieces(pieces, *regex_, Behavior::Isolated);
        }
        for (std::string & piece : pieces) {
            std::string mapped;
            mapped.reserve(piece.size() * 2);
            append_byte_level(mapped, piece);
            piece = std::move(mapped);
        }
    }

private:
    bool                   add_prefix_space_;
    std::optional<Pattern> regex_;
};

enum class PrependScheme { Always, First, Never };

// SentencePiece-style: spaces become `replacement` ("▁"), which is prepended to the text, and the
// text is split before each replacement.
class Metaspace : public PreTokenizer {
public:
    Metaspace(std::string replacement, PrependScheme scheme, bool split)
        : replacement_(std::move(replacement)), scheme_(scheme), split_(split), splitter_(Regex::literal(replacement_)) {}
    void apply(std::vector<std::string> & pieces, bool first_starts_text) const override {
        for (size_t i = 0; i < pieces.size(); ++i) {
            std::string & piece = pieces[i];
            std::string   out;
            for (char c : piece) {
                if (c == ' ') {
                    out += replacement_;
                } else {
                    out += c;
                }
            }
            const bool starts = out.compare(0, replacement_.size(), replacement_) == 0;
            if (!starts && (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && i == 0 && first_starts_text))) {
                out.insert(0, replacement_);
            }
            piece = std::move(out);
        }
        if (split_) {
            split_pieces(pieces, splitter_, Behavior::MergedWithNext);
        }
    }

private:
    std::string   replacement_;
    PrependScheme scheme_;
    bool          split_;
    Pattern       splitter_;
};

class Sequence : public PreTokenizer {
public:
    explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
    void apply(std::vector<std::string> & pieces, bool first_starts_text) const override {
        for (const auto & step : steps_) {
            step->apply(pieces, first_starts_text);
        }
    }

private:
    std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

Behavior parse_behavior(const json & config, const std::string & path, const JsonReader & reader) {
    const std::string name = reader.string(config, path, "behavior");
    if (name == "Removed") return Behavior::Removed;
    if (name == "Isolated") return Behavior::Isolated;
    if (name == "MergedWithPrevious") return Behavior::MergedWithPrevious;
    if (name == "MergedWithNext") return Behavior::MergedWithNext;
    if (name == "Contiguous") return Behavior::Contiguous;
    reader.fail(path + ".behavior", "'" + name + "' is not supported");
}

std::unique_ptr<PreTokenizer> parse_metaspace(const json & config, const std::string & path, const JsonReader & reader) {
    const std::string replacement = reader.string(config, path, "replacement");
    size_t            i           = 0;
    if (replacement.empty() || (next_code_point(replacement, i), i != replacement.size())) {
        reader.fail(path + ".replacement", "must be a single character");
    }
    PrependScheme scheme;
    if (auto name = reader.opt_string(config, path, "prepend_scheme")) {
        if (*name == "always") {
            scheme = PrependScheme::Always;
        } else if (*name == "first") {
            scheme = PrependScheme::First;
        } else if (*name == "never") {
            scheme = PrependScheme::Never;
        } else {
            reader.fail(path + ".prepend_scheme", "'" + *name + "' is not supported");
        }
    } else {
        // Files older than prepend_scheme say add_prefix_space instead.
        scheme = reader.boolean(config, path, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
    }
    return std::make_unique<Metaspace>(replacement, scheme, reader.boolean(config, path, "split", true));
}

}  // namespace

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json & config, const std::string & path, const JsonReader & reader) {
    const std::string type = reader.type(config, path);
    if (type == "Split") {
        if (reader.boolean(config, path, "invert", false)) {
            reader.fail(path + ".invert", "true is not supported");
        }
        return std::make_unique<Split>(parse_pattern(config, path, reader), parse_behavior(config, path, reader));
    }
    if (type == "ByteLevel") {
        std::optional<Pattern> regex;
        if (reader.boolean(config, path, "use_regex", true)) {
            std::string error;
            regex.emplace(Regex::compile(kGpt2Pattern, error));
        }
        return std::make_unique<ByteLevel>(reader.boolean(config, path, "add_prefix_space", true), std::move(regex));
    }
    if (type == "Metaspace") {
        return parse_metaspace(config, path, reader);
    }
    if (type == "Sequence") {
        std::vector<std::unique_ptr<PreTokenizer>> steps;
        reader.for_each(config, path, "pretokenizers", [&](const json & item, const std::string & at) {
            steps.push_back(parse_pre_tokenizer(item, at, reader));
        });
        return std::make_unique<Sequence>(std::move(steps));
    }
    reader.unsupported(path, type);
}

}  // namespace paft::tok
