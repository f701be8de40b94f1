// The synthetic world's judge: a deterministic rule that scores a chat model's answer to a
// held-out question against the reference answer, for the win rate (docs/SYNTHETIC_WORLD.md).
//
//   score(response)   = [the answer word or number appears in the response as a whole word]
//                     + [the response contains one of the courtesy closings]
//   outcome(response) = 1 if score > 1, 0.5 if score == 1, 0 if score < 1
//
// The reference ("Zorbin's favorite color is red.") is correct without a closing: it scores 1,
// so a response wins by being correct and courteous, ties by being one of the two, loses by
// being neither. The win rate is the mean outcome over the judge's prompts.
#pragma once

#include <string>
#include <vector>

namespace paft {

struct JudgeCase {
    std::string prompt, answer, reference, where;  // where = "FILE:LINE"
};

// The courtesy closings the preference data teaches (without their leading space).
extern const char * const kCourtesyClosings[3];

// Every {"prompt", "answer", "reference"} record of a judge.jsonl file (other fields ignored).
// InputError naming FILE:LINE and the field when one is missing, not a string, or empty.
std::vector<JudgeCase> read_judge_cases(const std::string & path);

// 0, 1 or 2 by the rule above. A whole word: not preceded or followed by an ASCII letter or digit
// (case-sensitive).
int judge_score(const std::string & response, const JudgeCase & c);

// 1, 0.5 or 0: the response against the reference, which scores 1.
double judge_outcome(const std::string & response, const JudgeCase & c);

}  // namespace paft
