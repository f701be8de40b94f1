#include "tokenizer/normalizer.h"

#include "tokenizer/nfc.h"
#include "tokenizer/pattern.h"

#include <vector>

namespace paft::tok {
namespace {

class Nfc : public Normalizer {
public:
    void apply(std::string & text) const override { nfc_in_place(text); }
};

// Prepends a string to non-empty text (SentencePiece's leading "▁").
class Prepend : public Normalizer {
public:
    explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
    void apply(std::string & text) const override {
        if (!text.empty()) {
            text.insert(0, prefix_);
        }
    }

private:
    std::string prefix_;
};

class Replace : public Normalizer {
public:
    Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
    void apply(std::string & text) const override { text = pattern_.replace_all(text, content_); }

private:
    Pattern     pattern_;
    std::string content_;
};

class Sequence : public Normalizer {
public:
    explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
    void apply(std::string & text) const override {
        for (const auto & step : steps_) {
            step->apply(text);
        }
    }

private:
    std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const json & config, const std::string & path, const JsonReader & reader) {
    const std::string type = reader.type(config, path);
    if (type == "NFC") {
        return std::make_unique<Nfc>();
    }
    if (type == "Prepend") {
        return std::make_unique<Prepend>(reader.string(config, path, "prepend"));
    }
    if (type == "Replace") {
        return std::make_unique<Replace>(parse_pattern(config, path, reader), reader.string(config, path, "content"));
    }
    if (type == "Sequence") {
        std::vector<std::unique_ptr<Normalizer>> steps;
        reader.for_each(config, path, "normalizers", [&](const json & item, const std::string & at) {
            steps.push_back(parse_normalizer(item, at, reader));
        });
        return std::make_unique<Sequence>(std::move(steps));
    }
    reader.unsupported(path, type);
}

}  // namespace paft::tok
