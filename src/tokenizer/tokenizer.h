// A Hugging Face fast tokenizer read from a model directory's tokenizer.json (the pipeline:
// added/special tokens, normalizer, pre-tokenizer, BPE model, post-processor, decoder) and
// tokenizer_config.json (special tokens, chat template). Behaves as the `tokenizers` library and
// transformers do; any component or option it does not implement is an InputError naming it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paft {

// What tokenizer_config.json says (missing file or field = not set).
struct TokenizerConfig {
    std::optional<std::string> bos_token, eos_token, pad_token, unk_token;  // token strings
    std::vector<std::string>   additional_special_tokens;
    std::string                chat_template;  // the default template's Jinja source; empty if none
    // decode() then removes the space before punctuation and contractions (" ." -> "."), as
    // transformers does.
    bool                       clean_up_tokenization_spaces = false;
};

class Tokenizer {
public:
    // Reads DIR/tokenizer.json (required) and DIR/tokenizer_config.json (optional).
    static Tokenizer load(const std::string & dir);
    // Same from explicit files; `config_path` may be empty.
    static Tokenizer from_files(const std::string & tokenizer_json_path, const std::string & config_path);

    // Token ids of `text` (UTF-8). add_special_tokens applies the post-processor (BOS/EOS as the
    // file's TemplateProcessing says), as transformers' tokenizer(text) does by default.
    // Invalid UTF-8 is an InputError. Thread-safe.
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
    // Text of `ids` through the decoder; special tokens dropped when skip_special_tokens, ids
    // without a token skipped (as tokenizers does).
    std::string decode(const std::vector<int32_t> & ids, bool skip_special_tokens) const;

    int32_t                vocab_size() const;  // model vocabulary plus added tokens (max id + 1)
    std::string            id_to_piece(int32_t id) const;  // the token's string in the vocabulary
    std::optional<int32_t> piece_to_id(std::string_view piece) const;
    bool                   is_special(int32_t id) const;  // an added token marked "special"

    const TokenizerConfig & config() const;
    std::optional<int32_t>  bos_id() const;  // ids of config().bos_token etc., when set
    std::optional<int32_t>  eos_id() const;
    std::optional<int32_t>  pad_id() const;

    Tokenizer(Tokenizer &&) noexcept;
    Tokenizer & operator=(Tokenizer &&) noexcept;
    ~Tokenizer();

private:
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace paft
