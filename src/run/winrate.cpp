#include "run/winrate.h"

#include "core/progress.h"
#include "eval/generate.h"

#include <cmath>

namespace paft {

WinRate measure_win_rate(Decoder & decoder, const Tokenizer & tokenizer, const ExampleEncoder & encoder,
                         const std::vector<JudgeCase> & cases, const WinRateOptions & options,
                         std::vector<JudgedAnswer> & answers, Communicator * ranks) {
    std::vector<std::vector<int32_t>> prompts;
    for (const JudgeCase & c : cases) {
        const nlohmann::ordered_json messages = {{{"role", "user"}, {"content", c.prompt}}};
        prompts.push_back(tokenizer.encode(encoder.render(messages, /*add_generation_prompt=*/true, c.where),
                                           /*add_special_tokens=*/false));
    }
    GenerationOptions g;
    g.max_new_tokens = options.max_new_tokens;
    g.eos_ids        = options.eos_ids;
    Progress progress("win rate", (long) cases.size(), "prompts");
    long     done = 0;
    const std::vector<Generation> generations =
        generate_shared(decoder, tokenizer, prompts, g, options.batch, ranks, [&](size_t, const Generation &) {
            progress.update(++done);
        });
    progress.finish();

    WinRate w;
    w.cases = cases.size();
    answers.clear();
    double sum = 0, sum_sq = 0;
    for (size_t i = 0; i < cases.size(); i++) {
        JudgedAnswer a{generations[i].text, judge_score(generations[i].text, cases[i]), 0};
        a.outcome = judge_outcome(generations[i].text, cases[i]);
        w.wins += a.outcome == 1.0;
        w.ties += a.outcome == 0.5;
        sum += a.outcome;
        sum_sq += a.outcome * a.outcome;
        answers.push_back(std::move(a));
    }
    const double n = (double) cases.size();
    if (n > 0) {
        w.win_rate = sum / n;
    }
    if (n > 1) {
        const double variance = std::max(0.0, (sum_sq - n * w.win_rate * w.win_rate) / (n - 1));
        w.std_error           = std::sqrt(variance / n);
    }
    return w;
}

}  // namespace paft
