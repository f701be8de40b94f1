#include "eval/eval_progress.h"

#include <fmt/format.h>

namespace paft {

EvalProgressBars::EvalProgressBars(std::string prefix, bool plain) : prefix_(std::move(prefix)), plain_(plain) {}

std::function<void(long, long)> EvalProgressBars::on_requests() {
    // Scaled to the task's requests: under MPI the model reports this rank's share of them.
    return [this](long done, long of) {
        if (bar_) {
            bar_->update(of > 0 ? done * requests_ / of : done);
        }
    };
}

std::function<void(const EvalProgress &)> EvalProgressBars::on_task() {
    return [this](const EvalProgress & p) {
        if (!p.done) {
            const std::string label = fmt::format("{}[{}/{}] {}", prefix_, p.task_index + 1, p.task_count, p.task);
            requests_ = static_cast<long>(p.requests);
            bar_      = std::make_unique<Progress>(label, requests_, "req", plain_);
        } else if (bar_) {
            bar_->finish();
            bar_.reset();
        }
    };
}

}  // namespace paft
