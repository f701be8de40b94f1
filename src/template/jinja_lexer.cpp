#include "template/jinja_lexer.h"

#include "core/error.h"
#include "template/jinja_value.h"

#include <cstdlib>
#include <cstring>

namespace paft::jinja {

namespace {


// Python's str.rstrip(): whitespace is Unicode's, as jinja2 strips it.
void rstrip_unicode(std::string & text) {
    size_t end = 0, pos = 0;
    for (const std::string & cp : code_points(text)) {
        pos += cp.size();
        if (!is_space(cp)) end = pos;
    }
    text.resize(end);
}

// The length of the Unicode whitespace at the start of `s` (jinja2's `\s*`).
size_t leading_space(std::string_view s) {
    size_t len = 0;
    while (len < s.size()) {
        const size_t size = first_code_point_size(s.substr(len));
        if (!is_space(s.substr(len, size))) break;
        len += size;
    }
    return len;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// jinja2 reads the source with universal newlines and, unless keep_trailing_newline is on,
// drops one trailing newline.
std::string normalize_newlines(std::string_view source, bool keep_trailing_newline) {
    std::string out;
    out.reserve(source.size());
    for (size_t k = 0; k < source.size(); ++k) {
        if (source[k] == '\r') {
            out += '\n';
            if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
        } else {
            out += source[k];
        }
    }
    if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

class Lexer {
public:
    Lexer(std::string source, const std::string & origin, const Whitespace & ws)
        : src_(std::move(source)), origin_(origin), ws_(ws) {}

    std::vector<Token> run() {
        while (pos_ < src_.size()) {
            size_t start = find_tag(pos_);
            std::string text = src_.substr(pos_, start - pos_);
            if (start == std::string::npos) {
                emit_text(std::move(text), pos_);
                pos_ = src_.size();
                break;
            }
            const char kind     = src_[start + 1];
            const char modifier = start + 2 < src_.size() ? src_[start + 2] : '\0';
            if (modifier == '-') {
                rstrip_unicode(text);
            } else if (modifier != '+' && kind != '{') {
                lstrip(text, pos_);
            }
            emit_text(std::move(text), pos_);
            pos_ = start + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
            if (kind == '#') {
                skip_comment(start);
            } else if (kind == '%' && lex_raw(start)) {
                continue;
            } else {
                lex_tag(kind == '{', start);
            }
        }
        push(Token::Type::End, "", line_at(src_.size()));
        return std::move(tokens_);
    }

private:
    size_t find_tag(size_t from) const {
        for (size_t k = from; k + 1 < src_.size(); ++k) {
            if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
        }
        return std::string::npos;
    }

    // lstrip_blocks: drop the whitespace between the line's start and the tag, when nothing else
    // precedes the tag on its line.
    void lstrip(std::string & text, size_t text_start) const {
        if (!ws_.lstrip_blocks) return;
        const size_t nl           = text.rfind('\n');
        const size_t line_start   = nl == std::string::npos ? 0 : nl + 1;
        const bool   at_line_start = line_start > 0 || text_start == 0 || src_[text_start - 1] == '\n';
        if (!at_line_start) return;
        if (leading_space(std::string_view(text).substr(line_start)) == text.size() - line_start) text.resize(line_start);
    }

    // Matches `word` after optional whitespace at `at`; returns the position after it or npos.
    size_t match_word(size_t at, std::string_view word) const {
        at += leading_space(std::string_view(src_).substr(at));
        if (src_.compare(at, word.size(), word) != 0) return std::string::npos;
        at += word.size();
        if (at < src_.size() && is_name_char(src_[at])) return std::string::npos;
        return at + leading_space(std::string_view(src_).substr(at));
    }

    // `{% raw %}...{% endraw %}`: the body is text, whitespace control applying at both tags as
    // at any block tag (except that the opening tag keeps the newline after it, as in jinja2).
    bool lex_raw(size_t start) {
        size_t at = match_word(pos_, "raw");
        if (at == std::string::npos) return false;
        if (src_.compare(at, 3, "-%}") == 0) {
            pos_ = at + 3;
            after_tag('-', true);
        } else if (src_.compare(at, 2, "%}") == 0) {
            pos_ = at + 2;
        } else {
            return false;
        }
        for (size_t end = src_.find("{%", pos_); end != std::string::npos; end = src_.find("{%", end + 2)) {
            const char modifier = end + 2 < src_.size() ? src_[end + 2] : '\0';
            const size_t name   = end + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
            const size_t after  = match_word(name, "endraw");
            if (after == std::string::npos) continue;
            char close = '\0';
            if (src_[after] == '-' || src_[after] == '+') close = src_[after];
            const size_t tag_end = after + (close ? 1 : 0);
            if (src_.compare(tag_end, 2, "%}") != 0) continue;
            std::string body = src_.substr(pos_, end - pos_);
            if (modifier == '-') rstrip_unicode(body);
            else if (modifier != '+') lstrip(body, pos_);
            emit_text(std::move(body), pos_);
            pos_ = tag_end + 2;
            after_tag(close, true);
            return true;
        }
        fail(start, "missing end of raw directive");
    }

    void emit_text(std::string text, size_t at) {
        if (!text.empty()) push(Token::Type::Text, std::move(text), line_at(at));
    }

    int line_at(size_t at) {
        // Lines are counted incrementally: positions only move forward.
        for (; line_pos_ < at && line_pos_ < src_.size(); ++line_pos_) {
            if (src_[line_pos_] == '\n') ++line_;
        }
        return line_;
    }

    void push(Token::Type type, std::string text, int line) {
        Token t;
        t.type = type;
        t.text = std::move(text);
        t.line = line;
        tokens_.push_back(std::move(t));
    }

    [[noreturn]] void fail(size_t at, const std::string & what) {
        throw InputError(origin_ + ":" + std::to_string(line_at(at)) + ": template syntax error: " + what);
    }

    void skip_comment(size_t start) {
        const size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) fail(start, "missing end of comment tag");
        const char before = end > pos_ ? src_[end - 1] : '\0';
        pos_              = end + 2;
        after_tag(before, true);
    }

    // Whitespace control after a closing delimiter: `-` strips all whitespace, `+` nothing, and
    // trim_blocks removes one newline after block and comment tags.
    void after_tag(char modifier, bool block) {
        if (modifier == '-') {
            pos_ += leading_space(std::string_view(src_).substr(pos_));
        } else if (modifier != '+' && block && ws_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
            ++pos_;
        }
    }

    void lex_tag(bool variable, size_t start) {
        push(variable ? Token::Type::VarBegin : Token::Type::BlockBegin, "", line_at(start));
        const char * close = variable ? "}}" : "%}";
        int          depth = 0;  // open brackets: an end delimiter inside them is an operator
        for (;;) {
            pos_ += leading_space(std::string_view(src_).substr(pos_));
            if (pos_ >= src_.size()) fail(start, std::string("unexpected end of template, expected '") + close + "'");
            if (depth == 0 && closes(close)) return;
            lex_expression_token(depth);
        }
    }

    bool closes(const char * close) {
        char modifier = '\0';
        size_t at     = pos_;
        if (src_[at] == '-' || (src_[at] == '+' && close[0] == '%')) modifier = src_[at++];
        if (src_.compare(at, 2, close) != 0) return false;
        push(close[0] == '}' ? Token::Type::VarEnd : Token::Type::BlockEnd, "", line_at(pos_));
        pos_ = at + 2;
        after_tag(modifier, close[0] == '%');
        return true;
    }

    void lex_expression_token(int & depth) {
        const size_t start = pos_;
        const char   c     = src_[pos_];
        if (is_name_start(c)) {
            while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
            push(Token::Type::Name, src_.substr(start, pos_ - start), line_at(start));
        } else if (is_digit(c)) {
            lex_number();
        } else if (c == '\'' || c == '"') {
            lex_string();
        } else {
            static const char * const ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~",
                                               "[",  "]",  "(",  ")",  "{",  "}",  "=", ".", ":", "|", ",", ";",
                                               "<",  ">"};
            for (const char * op : ops) {
                const size_t len = std::strlen(op);
                if (src_.compare(pos_, len, op) == 0) {
                    if (op[0] == '(' || op[0] == '[' || op[0] == '{') ++depth;
                    if (len == 1 && (op[0] == ')' || op[0] == ']' || op[0] == '}')) --depth;
                    if (depth < 0) fail(start, std::string("unexpected '") + op + "'");
                    push(Token::Type::Op, op, line_at(start));
                    pos_ += len;
                    return;
                }
            }
            fail(start, std::string("unexpected char '") + c + "'");
        }
    }

    std::string digits() {
        std::string out;
        while (pos_ < src_.size() && (is_digit(src_[pos_]) || (src_[pos_] == '_' && out.size()))) {
            if (src_[pos_] != '_') out += src_[pos_];
            ++pos_;
        }
        return out;
    }

    void lex_number() {
        const size_t start = pos_;
        // After a dot (`items.0`) a number is an integer attribute, never a float.
        const bool   after_dot = start > 0 && src_[start - 1] == '.';
        std::string  text      = digits();
        bool         is_float  = false;
        if (!after_dot && pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
            ++pos_;
            text += '.';
            text += digits();
            is_float = true;
        }
        if (!after_dot && pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
            size_t k = pos_ + 1;
            if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
            if (k < src_.size() && is_digit(src_[k])) {
                text += 'e';
                text.append(src_, pos_ + 1, k - pos_ - 1);
                pos_ = k;
                text += digits();
                is_float = true;
            }
        }
        Token t;
        t.line = line_at(start);
        t.text = text;
        if (is_float) {
            t.type        = Token::Type::Float;
            t.float_value = std::strtod(text.c_str(), nullptr);  // subnormals and overflow as Python reads them
        } else {
            t.type = Token::Type::Int;
            try {
                t.int_value = std::stoll(text);
            } catch (const std::out_of_range &) {
                fail(start, "integer literal too large: " + text);
            }
        }
        tokens_.push_back(std::move(t));
    }

    uint32_t hex_escape(size_t start, int count) {
        if (pos_ + count > src_.size()) fail(start, "truncated \\x/\\u escape in string");
        uint32_t cp = 0;
        for (int k = 0; k < count; ++k) {
            const char h = src_[pos_ + k];
            const int  d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) fail(start, "truncated \\x/\\u escape in string");
            cp = cp * 16 + static_cast<uint32_t>(d);
        }
        pos_ += count;
        return cp;
    }

    // Python's unicode-escape decoding, as jinja2 applies it to string literals.
    void lex_string() {
        const size_t start = pos_;
        const char   quote = src_[pos_++];
        std::string  value;
        for (;;) {
            if (pos_ >= src_.size()) fail(start, "unterminated string");
            const char c = src_[pos_++];
            if (c == quote) break;
            if (c != '\\') {
                value += c;
                continue;
            }
            if (pos_ >= src_.size()) fail(start, "unterminated string");
            const char e = src_[pos_++];
            switch (e) {
            case '\n': break;
            case '\\': value += '\\'; break;
            case '\'': value += '\''; break;
            case '"': value += '"'; break;
            case 'a': value += '\a'; break;
            case 'b': value += '\b'; break;
            case 'f': value += '\f'; break;
            case 'n': value += '\n'; break;
            case 'r': value += '\r'; break;
            case 't': value += '\t'; break;
            case 'v': value += '\v'; break;
            case 'x': value += encode_utf8(hex_escape(start, 2)); break;
            case 'u': value += encode_utf8(hex_escape(start, 4)); break;
            case 'U': value += encode_utf8(hex_escape(start, 8)); break;
            default:
                if (e >= '0' && e <= '7') {
                    uint32_t cp = static_cast<uint32_t>(e - '0');
                    for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++k) {
                        cp = cp * 8 + static_cast<uint32_t>(src_[pos_++] - '0');
                    }
                    value += encode_utf8(cp);
                } else {
                    // Unknown escapes stay as written, as in Python.
                    value += '\\';
                    value += e;
                }
            }
        }
        push(Token::Type::String, std::move(value), line_at(start));
    }

    std::string        src_;
    const std::string & origin_;
    const Whitespace   ws_;
    size_t             pos_      = 0;
    size_t             line_pos_ = 0;
    int                line_     = 1;
    std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const std::string & origin, const Whitespace & ws) {
    return Lexer(normalize_newlines(source, ws.keep_trailing_newline), origin, ws).run();
}

}  // namespace paft::jinja
