#include "train/step_loop.h"

#include "core/error.h"
#include "core/progress.h"
#include "io/fs.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

namespace paft {

StepLoopResult run_step_loop(StepTrainer & trainer, const StepLoopConfig & c, long start_step, StepLoopState & state) {
    StepLoopResult result;
    Progress       progress(c.label, c.total_steps, "steps", c.plain_progress);
    progress.update(start_step);
    const auto t0 = std::chrono::steady_clock::now();
    for (long step = start_step; step < c.total_steps; step++) {
        std::fill(trainer.grads(), trainer.grads() + trainer.grad_count(), 0.0f);
        StepMetrics m = trainer.compute_gradients(step);
        trainer.penalize(m);
        const double loss      = m.values["loss"];
        const double grad_norm = clip_grad_norm(trainer.grads(), trainer.grad_count(), c.max_grad_norm);
        if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
            const std::optional<long> good = latest_checkpoint_step(c.output_dir);
            throw RuntimeFailure(fmt::format(
                "{}: step {}: the {} is {}; stopping (the last good checkpoint is {})", c.label, step + 1,
                std::isfinite(loss) ? "gradient norm" : "loss", std::isfinite(loss) ? grad_norm : loss,
                good ? fmt::format("{}/checkpoint-{}", c.output_dir, *good) : std::string("none")));
        }
        const double lr = c.schedule.lr(step);
        trainer.update(lr);

        state.num_tokens += m.tokens;
        result.tokens += m.tokens;
        result.steps++;
        result.last_loss = loss;
        for (const auto & [k, v] : m.values) {
            state.window_sums[k] += v;
        }
        state.window_steps++;
        const bool last = step + 1 == c.total_steps;
        if (last || (c.logging_steps > 0 && (step + 1) % c.logging_steps == 0)) {
            // The window's means; grad_norm and learning_rate are the step's own, as the Hugging
            // Face Trainer logs them.
            nlohmann::ordered_json line = {{"step", step + 1},
                                           {"epoch", (double) (step + 1) / (double) c.steps_per_epoch}};
            for (const auto & [k, v] : state.window_sums) {
                line[k] = v / (double) state.window_steps;
            }
            trainer.add_log_fields(line);
            line["grad_norm"]     = grad_norm;
            line["learning_rate"] = lr;
            line["num_tokens"]    = state.num_tokens;
            if (c.writes) {
                append_line(c.output_dir + "/metrics.jsonl", line.dump());
            }
            state.window_sums.clear();
            state.window_steps = 0;
        }
        if (c.eval_steps > 0 && (step + 1) % c.eval_steps == 0) {
            trainer.evaluate(step + 1);
        }
        if (c.save_steps > 0 && (step + 1) % c.save_steps == 0 && !last) {
            trainer.save_checkpoint(step + 1);
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        progress.set_status(
            fmt::format("loss {:.4f}, {:.0f} tok/s", loss, secs > 0 ? (double) result.tokens / secs : 0.0));
        progress.update(step + 1);
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.finish();
    return result;
}

}  // namespace paft

namespace paft {

long metrics_bytes(const std::string & dir) {
    std::error_code ec;
    const auto      size = std::filesystem::file_size(dir + "/metrics.jsonl", ec);
    return ec ? 0 : (long) size;
}

RunOutputGuard::RunOutputGuard(std::string dir, std::vector<std::string> files)
    : dir_(std::move(dir)), files_(std::move(files)) {
    std::error_code ec;
    made_dir_ = !std::filesystem::exists(dir_, ec);
    // Only what this run makes is its to remove.
    std::erase_if(files_, [&](const std::string & f) { return std::filesystem::exists(dir_ + "/" + f, ec); });
}

RunOutputGuard::~RunOutputGuard() {
    if (committed_) {
        return;
    }
    std::error_code ec;
    if (kept_log_bytes_ >= 0) {
        std::filesystem::resize_file(dir_ + "/metrics.jsonl", (uintmax_t) kept_log_bytes_, ec);
        return;
    }
    for (const std::string & f : files_) {
        std::filesystem::remove(dir_ + "/" + f, ec);
    }
    if (made_dir_ && std::filesystem::is_empty(dir_, ec)) {
        std::filesystem::remove(dir_, ec);
    }
}

}  // namespace paft
