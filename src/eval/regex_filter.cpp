#include "eval/regex_filter.h"

#include "core/error.h"
#include "template/jinja_strings.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include <vector>

namespace paft {

struct RegexFilter::Code {
    pcre2_code * code = nullptr;
    ~Code() { pcre2_code_free(code); }
};

RegexFilter::RegexFilter(const std::string & pattern, int group_select, std::string fallback, const std::string & where)
    : code_(std::make_unique<Code>()), group_select_(group_select), fallback_(std::move(fallback)) {
    int        error  = 0;
    PCRE2_SIZE offset = 0;
    code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                &error, &offset, nullptr);
    if (!code_->code) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error, message, sizeof(message));
        throw InputError(fmt::format("{}: bad regex \"{}\" at offset {}: {}", where, pattern, offset,
                                     reinterpret_cast<const char *>(message)));
    }
}

RegexFilter::~RegexFilter() = default;
RegexFilter::RegexFilter(RegexFilter &&) noexcept = default;

std::string RegexFilter::apply(const std::string & text) const {
    // re.findall: with no group each match's text, with one group that group, with several the
    // tuple of groups (an unmatched group is ''). Here a tuple is already reduced to its first
    // non-empty group, as the filter does next.
    uint32_t groups = 0;
    pcre2_pattern_info(code_->code, PCRE2_INFO_CAPTURECOUNT, &groups);
    pcre2_match_data *       data = pcre2_match_data_create_from_pattern(code_->code, nullptr);
    std::vector<std::string> found;
    std::vector<bool>        found_tuple;  // a several-group match with no non-empty group
    const auto *             subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    PCRE2_SIZE               start   = 0;
    uint32_t                 options = 0;
    while (start <= text.size()) {
        const int rc = pcre2_match(code_->code, subject, text.size(), start, options, data, nullptr);
        if (rc < 0) {
            if (options == 0 || start >= text.size()) {
                break;
            }
            // No non-empty match right after an empty one: move one character on (Python 3.7+).
            start++;
            while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
                start++;
            }
            options = 0;
            continue;
        }
        const PCRE2_SIZE * ov = pcre2_get_ovector_pointer(data);
        auto group_text       = [&](uint32_t g) {
            return g < static_cast<uint32_t>(rc) && ov[2 * g] != PCRE2_UNSET
                       ? text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]) : std::string();
        };
        if (groups <= 1) {
            found.push_back(group_text(groups));
            found_tuple.push_back(false);
        } else {
            std::string first;
            for (uint32_t g = 1; g <= groups && first.empty(); g++) {
                first = group_text(g);
            }
            found_tuple.push_back(first.empty());
            found.push_back(first);
        }
        // After an empty match, look for a non-empty one at the same place first.
        options = ov[0] == ov[1] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        start   = ov[1];
    }
    pcre2_match_data_free(data);
    if (found.empty()) {
        return fallback_;
    }
    const int64_t n = static_cast<int64_t>(found.size());
    const int64_t i = group_select_ < 0 ? n + group_select_ : group_select_;
    if (i < 0 || i >= n) {
        return fallback_;  // Python raises IndexError here
    }
    const size_t k = static_cast<size_t>(i);
    return jinja::py_strip(found_tuple[k] ? fallback_ : found[k], nullptr, true, true);
}

}  // namespace paft
