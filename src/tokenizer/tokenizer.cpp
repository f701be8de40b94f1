// The pipeline of a tokenizer.json: added tokens are cut out of the raw text, each remaining
// stretch is normalized (then cut at the added tokens matched after normalization),
// pre-tokenized into pieces, and each piece is encoded by the BPE model; the post-processor adds
// the special tokens around the result.
#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/json_snippet.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/json_reader.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer_config.h"
#include "core/utf8.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

namespace paft {

using tok::json;

struct Tokenizer::Impl {
    std::unique_ptr<tok::BpeModel>     model;
    std::vector<tok::AddedToken>       added;
    std::unique_ptr<tok::AddedTokenMatcher> raw_matcher, normalized_matcher;
    std::unique_ptr<tok::Normalizer>   normalizer;
    std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
    std::unique_ptr<tok::Decoder>      decoder;
    tok::SpecialTemplate               special_template;
    tok::Vocab                         added_ids;    // added tokens' content -> id (they win over the vocabulary)
    std::vector<std::string_view>      id_to_token;  // views into the vocabulary's keys and `added`
    std::vector<uint8_t>               is_added, is_special;
    TokenizerConfig                    config;

    void encode_text(std::string_view text, bool starts_text, std::vector<int32_t> & ids) const;
    void encode_normalized(std::string_view text, bool starts_text, std::vector<int32_t> & ids) const;
};

namespace {

// The object at root[key], or null when it is missing or null.
const json * component(const json & root, const char * key, const tok::JsonReader & reader) {
    const json * value = reader.find(root, "", key);
    if (value && !value->is_object()) {
        reader.fail(key, "must be an object or null, got " + json_snippet(*value));
    }
    return value;
}

// transformers' clean_up_tokenization: no space before punctuation and English contractions.
std::string clean_up_tokenization(std::string text) {
    static const std::pair<std::string_view, std::string_view> kRules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto & [from, to] : kRules) {
        std::string out;
        size_t      last = 0;
        for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, last)) {
            out.append(text, last, at - last);
            out.append(to);
            last = at + from.size();
        }
        out.append(text, last);
        text = std::move(out);
    }
    return text;
}

}  // namespace

void Tokenizer::Impl::encode_normalized(std::string_view text, bool starts_text, std::vector<int32_t> & ids) const {
    std::vector<std::string> pieces{std::string(text)};
    if (pre_tokenizer) {
        pre_tokenizer->apply(pieces, starts_text);
    }
    for (const std::string & piece : pieces) {
        model->encode(piece, ids);
    }
}

void Tokenizer::Impl::encode_text(std::string_view text, bool starts_text, std::vector<int32_t> & ids) const {
    if (!normalizer && normalized_matcher->empty()) {
        encode_normalized(text, starts_text, ids);
        return;
    }
    std::string normalized(text);
    if (normalizer) {
        normalizer->apply(normalized);
    }
    if (normalized_matcher->empty()) {
        encode_normalized(normalized, starts_text, ids);
        return;
    }
    std::vector<tok::Segment> segments;
    normalized_matcher->split(normalized, segments);
    for (const tok::Segment & s : segments) {
        if (s.token >= 0) {
            ids.push_back(s.token);
        } else {
            encode_normalized(s.text, starts_text && s.text.data() == normalized.data(), ids);
        }
    }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer &&) noexcept             = default;
Tokenizer & Tokenizer::operator=(Tokenizer &&) noexcept = default;
Tokenizer::~Tokenizer()                                 = default;

Tokenizer Tokenizer::load(const std::string & dir) {
    const std::string config = (std::filesystem::path(dir) / "tokenizer_config.json").string();
    return from_files((std::filesystem::path(dir) / "tokenizer.json").string(),
                      path_exists(config) ? config : std::string());
}

Tokenizer Tokenizer::from_files(const std::string & tokenizer_json_path, const std::string & config_path) {
    const tok::JsonReader reader(tokenizer_json_path);
    tok::BpeTables        tables;
    const json            root = tok::parse_tokenizer_json(read_file(tokenizer_json_path), reader, tables);
    auto                  impl = std::make_unique<Impl>();

    const json * model = component(root, "model", reader);
    if (!model) {
        reader.fail("model", "is missing");
    }
    if (const std::string type = reader.type(*model, "model"); type != "BPE") {
        reader.unsupported("model", type);
    }
    impl->model = std::make_unique<tok::BpeModel>(*model, std::move(tables), reader);
    if (const json * list = reader.find(root, "", "added_tokens")) {
        impl->added = tok::parse_added_tokens(*list, reader);
    }
    impl->raw_matcher        = std::make_unique<tok::AddedTokenMatcher>(impl->added, false);
    impl->normalized_matcher = std::make_unique<tok::AddedTokenMatcher>(impl->added, true);
    if (const json * c = component(root, "normalizer", reader)) {
        impl->normalizer = tok::parse_normalizer(*c, "normalizer", reader);
    }
    if (const json * c = component(root, "pre_tokenizer", reader)) {
        impl->pre_tokenizer = tok::parse_pre_tokenizer(*c, "pre_tokenizer", reader);
    }
    if (const json * c = component(root, "post_processor", reader)) {
        tok::parse_post_processor(*c, "post_processor", reader, impl->special_template);
    }
    if (const json * c = component(root, "decoder", reader)) {
        impl->decoder = tok::parse_decoder(*c, "decoder", reader);
    }

    int32_t max_id = -1;
    impl->model->vocab().for_each([&](std::string_view, int32_t id) { max_id = std::max(max_id, id); });
    for (const tok::AddedToken & t : impl->added) {
        max_id = std::max(max_id, t.id);
    }
    impl->id_to_token.resize(static_cast<size_t>(max_id + 1));
    impl->is_added.assign(impl->id_to_token.size(), 0);
    impl->is_special.assign(impl->id_to_token.size(), 0);
    impl->model->vocab().for_each([&](std::string_view token, int32_t id) { impl->id_to_token[id] = token; });
    for (const tok::AddedToken & t : impl->added) {
        impl->id_to_token[t.id] = t.content;
        impl->is_added[t.id]    = 1;
        impl->is_special[t.id]  = t.special;
        impl->added_ids.set(t.content, t.id);
    }
    for (const auto * ids : {&impl->special_template.prefix, &impl->special_template.suffix}) {
        for (int32_t id : *ids) {
            if (id >= static_cast<int32_t>(impl->id_to_token.size()) || impl->id_to_token[id].empty()) {
                reader.fail("post_processor", fmt::format("names token id {}, which has no token", id));
            }
        }
    }
    if (!config_path.empty()) {
        impl->config = tok::parse_tokenizer_config(config_path);
    }
    Tokenizer tokenizer(std::move(impl));
    // transformers warns and goes on without the token; so does paft, but says so.
    const auto & config = tokenizer.impl_->config;
    if (config.bos_token && !tokenizer.bos_id()) {
        fmt::print(stderr, "paft: warning: {}: bos_token '{}' is not in the vocabulary; no BOS token will be added\n",
                   config_path, *config.bos_token);
    }
    if (config.eos_token && !tokenizer.eos_id()) {
        fmt::print(stderr, "paft: warning: {}: eos_token '{}' is not in the vocabulary; no EOS token will be "
                           "appended or stop generation\n",
                   config_path, *config.eos_token);
    }
    return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
    if (const size_t valid = valid_utf8_prefix(text); valid != text.size()) {
        throw InputError(fmt::format("text to tokenize is not valid UTF-8 (at byte {})", valid));
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 8);
    if (add_special_tokens) {
        ids = impl_->special_template.prefix;
    }
    std::vector<tok::Segment> segments;
    impl_->raw_matcher->split(text, segments);
    for (const tok::Segment & s : segments) {
        if (s.token >= 0) {
            ids.push_back(s.token);
        } else {
            impl_->encode_text(s.text, s.text.data() == text.data(), ids);
        }
    }
    if (add_special_tokens) {
        ids.insert(ids.end(), impl_->special_template.suffix.begin(), impl_->special_template.suffix.end());
    }
    return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t> & ids, bool skip_special_tokens) const {
    std::vector<tok::DecodedPiece> pieces;
    pieces.reserve(ids.size());
    for (int32_t id : ids) {
        // Ids without a token are skipped, as tokenizers does.
        if (id < 0 || id >= vocab_size() || impl_->id_to_token[id].empty()) {
            continue;
        }
        if (skip_special_tokens && impl_->is_special[id]) {
            continue;
        }
        pieces.push_back({std::string(impl_->id_to_token[id]), impl_->is_added[id] != 0});
    }
    std::string text;
    if (impl_->decoder) {
        impl_->decoder->decode_chain(pieces);
        for (const tok::DecodedPiece & p : pieces) {
            text += p.text;
        }
    } else {
        for (size_t i = 0; i < pieces.size(); ++i) {
            text += (i ? " " : "") + pieces[i].text;
        }
    }
    return impl_->config.clean_up_tokenization_spaces ? clean_up_tokenization(std::move(text)) : text;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }

std::string Tokenizer::id_to_piece(int32_t id) const {
    if (id < 0 || id >= vocab_size()) {
        throw InputError(fmt::format("token id {} is out of range [0, {})", id, vocab_size()));
    }
    return std::string(impl_->id_to_token[id]);
}

std::optional<int32_t> Tokenizer::piece_to_id(std::string_view piece) const {
    if (const int32_t id = impl_->added_ids.find(piece); id >= 0) {
        return id;
    }
    if (const int32_t id = impl_->model->vocab().find(piece); id >= 0) {
        return id;
    }
    return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->is_special[id]; }

const TokenizerConfig & Tokenizer::config() const { return impl_->config; }

std::optional<int32_t> Tokenizer::bos_id() const {
    return impl_->config.bos_token ? piece_to_id(*impl_->config.bos_token) : std::nullopt;
}
std::optional<int32_t> Tokenizer::eos_id() const {
    return impl_->config.eos_token ? piece_to_id(*impl_->config.eos_token) : std::nullopt;
}
std::optional<int32_t> Tokenizer::pad_id() const {
    return impl_->config.pad_token ? piece_to_id(*impl_->config.pad_token) : std::nullopt;
}

}  // namespace paft
