#include "tokenizer/regex.h"

#include "core/error.h"
#include "core/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

namespace paft::tok {
namespace {

// Per-thread matching state shared by all patterns: one ovector pair is enough (we only need the
// whole match; a larger pattern's match still fills pair 0), and a JIT stack larger than PCRE2's
// 32 KiB default so that long runs of spaces or letters cannot exhaust it.
struct ThreadMatchState {
    pcre2_match_data *   data    = pcre2_match_data_create(1, nullptr);
    pcre2_match_context * context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack *    stack   = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);

    ThreadMatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
    ~ThreadMatchState() {
        pcre2_jit_stack_free(stack);
        pcre2_match_context_free(context);
        pcre2_match_data_free(data);
    }
};

ThreadMatchState & thread_state() {
    thread_local ThreadMatchState state;
    return state;
}

std::string escape(const std::string & literal) {
    std::string out;
    for (char c : literal) {
        if (std::string_view("\\^$.[]|()?*+{}-#/ \t\n\r").find(c) != std::string_view::npos) {
            out += '\\';
        }
        out += c;
    }
    return out;
}

}  // namespace

struct Regex::Code {
    pcre2_code * code = nullptr;
    ~Code() { pcre2_code_free(code); }
};

Regex::Regex(std::unique_ptr<Code> code) : code_(std::move(code)) {}
Regex::~Regex() = default;

std::unique_ptr<Regex> Regex::compile(const std::string & pattern, std::string & error) {
    int        code_error = 0;
    PCRE2_SIZE offset     = 0;
    auto       code       = std::make_unique<Code>();
    code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                               &code_error, &offset, nullptr);
    if (!code->code) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(code_error, message, sizeof(message));
        error = fmt::format("{} at offset {}", reinterpret_cast<const char *>(message), offset);
        return nullptr;
    }
    // Without JIT support PCRE2 still matches, only slower; nothing to report.
    pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE);
    return std::unique_ptr<Regex>(new Regex(std::move(code)));
}

std::unique_ptr<Regex> Regex::literal(const std::string & literal) {
    std::string error;
    return compile(escape(literal), error);
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>> & out) const {
    ThreadMatchState & state = thread_state();
    const auto *       subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t             start   = 0;
    while (start <= text.size()) {
        const int rc = pcre2_match(code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, state.data, state.context);
        if (rc == PCRE2_ERROR_NOMATCH) {
            return;
        }
        if (rc < 0) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(rc, message, sizeof(message));
            throw RuntimeFailure(fmt::format("regular expression match failed: {}", reinterpret_cast<const char *>(message)));
        }
        const PCRE2_SIZE * ov = pcre2_get_ovector_pointer(state.data);
        if (ov[1] > ov[0]) {
            out.emplace_back(ov[0], ov[1]);
            start = ov[1];
        } else if (ov[0] >= text.size()) {
            return;
        } else {
            start = ov[0] + utf8_length(static_cast<unsigned char>(text[ov[0]]));
        }
    }
}

bool Regex::full_match(std::string_view text) const {
    ThreadMatchState & state = thread_state();
    const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                               PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED | PCRE2_ENDANCHORED, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) {
        return false;
    }
    if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        throw RuntimeFailure(fmt::format("regular expression match failed: {}", reinterpret_cast<const char *>(message)));
    }
    return true;
}

std::string Regex::replace_all(std::string_view text, std::string_view content) const {
    std::vector<std::pair<size_t, size_t>> matches;
    find_all(text, matches);
    std::string out;
    size_t      last = 0;
    for (const auto & [b, e] : matches) {
        out.append(text.substr(last, b - last));
        out.append(content);
        last = e;
    }
    out.append(text.substr(last));
    return out;
}

}  // namespace paft::tok
