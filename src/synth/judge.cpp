#include "synth/judge.h"

#include "core/error.h"
#include "data/records.h"
#include "io/json_snippet.h"

#include <fmt/format.h>

namespace paft {

const char * const kCourtesyClosings[3] = {"I hope this helps!", "Happy to help!", "Thank you for asking!"};

namespace {

bool is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Whether `word` occurs in `text` with no letter or digit right before or after it.
bool contains_whole_word(const std::string & text, const std::string & word) {
    for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
        const size_t end = at + word.size();
        if ((at == 0 || !is_word_char(text[at - 1])) && (end == text.size() || !is_word_char(text[end]))) {
            return true;
        }
    }
    return false;
}

const std::string & required_string(const Record & r, const char * field) {
    auto it = r.value.find(field);
    if (it == r.value.end() || !it->is_string() || it->get_ref<const std::string &>().empty()) {
        throw InputError(fmt::format("{}: field '{}' must be a non-empty string{}", r.where, field,
                                     it == r.value.end() ? " (missing)" : ", found " + json_snippet(*it)));
    }
    return it->get_ref<const std::string &>();
}

}  // namespace

std::vector<JudgeCase> read_judge_cases(const std::string & path) {
    std::vector<JudgeCase> cases;
    for_each_record(path, [&](Record && r) {
        cases.push_back({required_string(r, "prompt"), required_string(r, "answer"), required_string(r, "reference"),
                         r.where});
        return true;
    });
    return cases;
}

int judge_score(const std::string & response, const JudgeCase & c) {
    int score = contains_whole_word(response, c.answer) ? 1 : 0;
    for (const char * closing : kCourtesyClosings) {
        if (response.find(closing) != std::string::npos) {
            score++;
            break;
        }
    }
    return score;
}

double judge_outcome(const std::string & response, const JudgeCase & c) {
    const int reference_score = judge_score(c.reference, c);  // 1 for the world's: correct, no closing
    const int score           = judge_score(response, c);
    return score > reference_score ? 1.0 : score == reference_score ? 0.5 : 0.0;
}

}  // namespace paft
