#include "tokenizer/decoder.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/pattern.h"
#include "core/utf8.h"

namespace paft::tok {
namespace {

// Characters back to bytes, then the bytes as UTF-8 (ill-formed parts become U+FFFD). Runs of
// model tokens are decoded together, since a character's bytes may span tokens; added tokens stay
// as they are, as transformers.js does. A token with a character outside the byte map contributes
// its own UTF-8 bytes, as tokenizers does.
class ByteLevel : public Decoder {
public:
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        std::vector<DecodedPiece> out;
        std::string               bytes;
        bool                      pending = false;
        auto flush = [&] {
            if (pending) {
                out.push_back({utf8_lossy(bytes), false});
                bytes.clear();
                pending = false;
            }
        };
        for (DecodedPiece & piece : pieces) {
            if (piece.added) {
                flush();
                out.push_back(std::move(piece));
                continue;
            }
            pending            = true;
            const size_t start = bytes.size();
            for (size_t i = 0; i < piece.text.size();) {
                const int b = char_to_byte(next_code_point(piece.text, i));
                if (b < 0) {
                    bytes.resize(start);
                    bytes += piece.text;
                    break;
                }
                bytes += static_cast<char>(b);
            }
        }
        flush();
        pieces = std::move(out);
    }
};

// Runs of "<0xXX>" tokens become the text their bytes spell.
class ByteFallback : public Decoder {
public:
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        std::vector<DecodedPiece> out;
        std::string               bytes;
        for (DecodedPiece & piece : pieces) {
            const int byte = parse_byte(piece.text);
            if (byte >= 0) {
                bytes += static_cast<char>(byte);
                continue;
            }
            if (!bytes.empty()) {
                out.push_back({utf8_lossy(bytes), false});
                bytes.clear();
            }
            out.push_back(std::move(piece));
        }
        if (!bytes.empty()) {
            out.push_back({utf8_lossy(bytes), false});
        }
        pieces = std::move(out);
    }

private:
    static int hex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    }
    static int parse_byte(const std::string & t) {
        if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>' || hex(t[3]) < 0 || hex(t[4]) < 0) {
            return -1;
        }
        return hex(t[3]) * 16 + hex(t[4]);
    }
};

class Fuse : public Decoder {
public:
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        std::string all;
        for (const DecodedPiece & piece : pieces) {
            all += piece.text;
        }
        pieces.assign(1, {std::move(all), false});
    }
};

// Removes up to `start` leading and `stop` trailing `content` characters from each piece.
class Strip : public Decoder {
public:
    Strip(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        const size_t n = content_.size();
        for (DecodedPiece & piece : pieces) {
            std::string & t     = piece.text;
            size_t        begin = 0, end = t.size();
            for (size_t k = 0; k < start_ && end - begin >= n && t.compare(begin, n, content_) == 0; ++k) {
                begin += n;
            }
            for (size_t k = 0; k < stop_ && end - begin >= n && t.compare(end - n, n, content_) == 0; ++k) {
                end -= n;
            }
            t = t.substr(begin, end - begin);
        }
    }

private:
    std::string content_;
    size_t      start_, stop_;
};

class Replace : public Decoder {
public:
    Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        for (DecodedPiece & piece : pieces) {
            piece.text = pattern_.replace_all(piece.text, content_);
        }
    }

private:
    Pattern     pattern_;
    std::string content_;
};

// Replacement characters back to spaces; the first piece loses the space its prepending added.
class Metaspace : public Decoder {
public:
    Metaspace(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        for (size_t i = 0; i < pieces.size(); ++i) {
            std::string out;
            const std::string & t = pieces[i].text;
            for (size_t k = 0; k < t.size();) {
                if (t.compare(k, replacement_.size(), replacement_) == 0) {
                    out += ' ';
                    k += replacement_.size();
                } else {
                    out += t[k++];
                }
            }
            if (i == 0 && strip_first_ && !out.empty() && out[0] == ' ') {
                out.erase(0, 1);
            }
            pieces[i].text = std::move(out);
        }
    }

private:
    std::string replacement_;
    bool        strip_first_;
};

class Sequence : public Decoder {
public:
    explicit Sequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
    void decode_chain(std::vector<DecodedPiece> & pieces) const override {
        for (const auto & step : steps_) {
            step->decode_chain(pieces);
        }
    }

private:
    std::vector<std::unique_ptr<Decoder>> steps_;
};

size_t count(const json & config, const std::string & path, const char * key, const JsonReader & reader) {
    const int64_t n = reader.integer(config, path, key, 0);
    if (n < 0) {
        reader.fail(path + "." + key, "must not be negative");
    }
    return static_cast<size_t>(n);
}

}  // namespace

std::unique_ptr<Decoder> parse_decoder(const json & config, const std::string & path, const JsonReader & reader) {
    const std::string type = reader.type(config, path);
    if (type == "ByteLevel") {
        return std::make_unique<ByteLevel>();
    }
    if (type == "ByteFallback") {
        return std::make_unique<ByteFallback>();
    }
    if (type == "Fuse") {
        return std::make_unique<Fuse>();
    }
    if (type == "Strip") {
        return std::make_unique<Strip>(reader.string(config, path, "content"), count(config, path, "start", reader),
                                       count(config, path, "stop", reader));
    }
    if (type == "Replace") {
        return std::make_unique<Replace>(parse_pattern(config, path, reader), reader.string(config, path, "content"));
    }
    if (type == "Metaspace") {
        const std::optional<std::string> scheme = reader.opt_string(config, path, "prepend_scheme");
        const bool strip_first = scheme ? *scheme != "never" : reader.boolean(config, path, "add_prefix_space", true);
        return std::make_unique<Metaspace>(reader.string(config, path, "replacement"), strip_first);
    }
    if (type == "Sequence") {
        std::vector<std::unique_ptr<Decoder>> steps;
        reader.for_each(config, path, "decoders",
                        [&](const json & item, const std::string & at) { steps.push_back(parse_decoder(item, at, reader)); });
        return std::make_unique<Sequence>(std::move(steps));
    }
    reader.unsupported(path, type);
}

}  // namespace paft::tok
