// A win rate in AlpacaEval's manner, judged by a deterministic judge instead of GPT-4: the model
// answers each held-out prompt (a user turn through its chat template, greedy), the judge
// (synth/judge.h) compares the answer with the case's reference answer, and the win rate is the
// mean outcome (1 win, 0.5 tie, 0 loss) with its standard error (sample sd / sqrt(n)).
#pragma once

#include "core/communicator.h"
#include "data/dataset.h"
#include "model/inference.h"
#include "synth/judge.h"
#include "tokenizer/tokenizer.h"

#include <string>
#include <vector>

namespace paft {

struct WinRateOptions {
    int                  max_new_tokens = 64;
    int                  batch          = 8;  // prompts decoded together
    std::vector<int32_t> eos_ids;             // generation stops at these
};

struct WinRate {
    double win_rate  = 0;  // mean outcome, in [0, 1]
    double std_error = 0;  // 0 for fewer than two cases
    size_t cases = 0, wins = 0, ties = 0;
};

struct JudgedAnswer {
    std::string response;
    int         score   = 0;
    double      outcome = 0;
};

// Generates and judges every case. `encoder` renders the prompts with the model's chat template.
// With `ranks`, the cases' generations are shared among them (generate_shared).
WinRate measure_win_rate(Decoder & decoder, const Tokenizer & tokenizer, const ExampleEncoder & encoder,
                         const std::vector<JudgeCase> & cases, const WinRateOptions & options,
                         std::vector<JudgedAnswer> & answers, Communicator * ranks = nullptr);

}  // namespace paft
