// Progress of an evaluation on stderr: one bar per task, counting the requests the model has
// answered (paft eval, paft run's evaluation stages).
#pragma once

#include "core/progress.h"
#include "eval/evaluator.h"

#include <functional>
#include <memory>
#include <string>

namespace paft {

class EvalProgressBars {
public:
    // `prefix` goes before each task's label ("[1/2] arc_challenge"); `plain` as Progress's.
    EvalProgressBars(std::string prefix, bool plain);

    // For ModelLmOptions::on_progress and EvalOptions::progress. The bars outlive neither.
    std::function<void(long, long)>            on_requests();
    std::function<void(const EvalProgress &)> on_task();

private:
    std::string               prefix_;
    bool                      plain_;
    std::unique_ptr<Progress> bar_;
    long                      requests_ = 0;  // the current task's
};

}  // namespace paft
