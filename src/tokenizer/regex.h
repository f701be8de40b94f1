// A compiled PCRE2 pattern (UTF, Unicode properties, JIT) over valid UTF-8 text. Matching is
// thread-safe: match data and JIT stack are per thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paft::tok {

class Regex {
public:
    // Compiles `pattern`; on a syntax error returns null and sets `error` (with the offset).
    static std::unique_ptr<Regex> compile(const std::string & pattern, std::string & error);
    // A pattern that matches `literal` exactly.
    static std::unique_ptr<Regex> literal(const std::string & literal);
    ~Regex();

    // Byte ranges [begin, end) of the successive non-empty matches in `text` (valid UTF-8),
    // leftmost first, appended to `out`. After an empty match the search resumes one character on,
    // as JS's matchAll and Rust's find_iter do.
    void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>> & out) const;

    // Whether the pattern matches the whole of `text` (Python's re.fullmatch). RuntimeFailure when
    // PCRE2's match limit stops a pattern that backtracks without end.
    bool full_match(std::string_view text) const;

    // `text` with every match replaced by `content`.
    std::string replace_all(std::string_view text, std::string_view content) const;

private:
    struct Code;
    explicit Regex(std::unique_ptr<Code> code);
    std::unique_ptr<Code> code_;
};

}  // namespace paft::tok
