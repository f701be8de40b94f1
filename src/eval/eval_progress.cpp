#include "eval/eval_progress.h"

#include <fmt/format.h>

namespace paft {

EvalProgressBars::EvalProgressBars(std::string prefix, bool plain) : prefix_(std::move(prefix)), plain_(plain) {}

std::function<void(long, long)> EvalProgressBars::on_requests() {
    return [this](long done, long) {
        if (bar_) {
            bar_->update(done);
        }
    };
}

std::function<void(const EvalProgress &)> EvalProgressBars::on_task() {
    return [this](const EvalProgress & p) {
        if (!p.done) {
            const std::string label = fmt::format("{}[{}/{}] {}", prefix_, p.task_index + 1, p.task_count, p.task);
            bar_ = std::make_unique<Progress>(label, static_cast<long>(p.requests), "req", plain_);
        } else if (bar_) {
            bar_->finish();
            bar_.reset();
        }
    };
}

}  // namespace paft
