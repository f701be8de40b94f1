// lm-evaluation-harness's "regex" answer filter: re.findall(pattern, text), the match at
// group_select (negative counts from the end), a match with several groups reduced to its first
// non-empty group, stripped; `fallback` when nothing matches. Patterns are compiled by PCRE2,
// whose syntax is Python re's for the patterns tasks use (classes, groups, escapes, lazy
// quantifiers, lookaround).
#pragma once

#include <memory>
#include <string>

namespace paft {

class RegexFilter {
public:
    // Compiles `pattern`; InputError naming `where` on a syntax error.
    RegexFilter(const std::string & pattern, int group_select, std::string fallback, const std::string & where);
    ~RegexFilter();
    RegexFilter(RegexFilter &&) noexcept;

    std::string apply(const std::string & text) const;

private:
    struct Code;
    std::unique_ptr<Code> code_;
    int                   group_select_;
    std::string           fallback_;
};

}  // namespace paft
