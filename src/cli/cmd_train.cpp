// paft sft | dpo | orpo: train one LoRA adapter; paft parallel | sequential: the PAFT runs.
#include "cli/commands.h"
#include "core/backend.h"
#include "core/communicator.h"
#include "train/pipeline.h"
#include "train/recipe.h"
#include "train/trainer.h"

#include <fmt/format.h>

#include <memory>

namespace paft {
namespace {

void print_summary(const char * label, const TrainSummary & s, const std::string & out) {
    fmt::print("{:<10} {:>6} steps  {:>9.1f} tok/s  loss {:>8.4f}  -> {}\n", label, s.steps,
               s.seconds > 0 ? s.tokens / s.seconds : 0.0, s.last_loss, out);
}

void train_command(Method method, const TrainFlags & flags) {
    TrainOptions o       = resolve_train_options(method, flags);
    auto         backend = make_backend(o.threads);
    auto         model   = Model::load(o.model, o.load_options());
    TrainData    data    = load_train_data(o, model->config());
    Trainer      trainer(*backend, model, o, std::move(data), backend->threads(), &world());
    const TrainSummary summary = trainer.run();
    if (world().rank() == 0) {
        print_summary(method_name(method), summary, o.output_dir);
    }
}

void pipeline_command(bool parallel, const ParallelFlags & flags) {
    ParallelOptions o = resolve_parallel_options(flags);
    PipelineSummary s = parallel ? run_parallel(o) : run_sequential(o);
    if (world().rank() != 0) {
        return;
    }
    print_summary("sft", s.sft, o.sft.output_dir);
    print_summary(method_name(o.preference.method), s.preference, o.preference.output_dir);
    if (!s.model_dir.empty()) {
        fmt::print("merged model -> {}\n", s.model_dir);
    }
    fmt::print("wall time {:.1f} s\n", s.seconds);
}

}  // namespace

void register_train(CLI::App & app) {
    const std::pair<Method, const char *> commands[] = {
        {Method::sft, "Supervised fine-tuning of a LoRA adapter, with the PAFT L1 penalty (--l1-lambda)"},
        {Method::dpo, "Direct preference optimization of a LoRA adapter (sigmoid, ipo, hinge, robust, simpo)"},
        {Method::orpo, "Odds-ratio preference optimization of a LoRA adapter (no reference model)"},
    };
    for (const auto & [method, help] : commands) {
        CLI::App * cmd   = app.add_subcommand(method_name(method), help);
        auto       flags = std::make_shared<TrainFlags>();
        add_train_flags(*cmd, *flags);
        cmd->callback([method, flags] { train_command(method, *flags); });
    }
    const std::pair<bool, const char *> pipelines[] = {
        {true, "PAFT: SFT (L1) and preference training at once over one base, then a merge (TIES by default)"},
        {false, "The sequential baseline: SFT, merged into the base, then preference training on that model"},
    };
    for (const auto & [parallel, help] : pipelines) {
        CLI::App * cmd   = app.add_subcommand(parallel ? "parallel" : "sequential", help);
        auto       flags = std::make_shared<ParallelFlags>();
        add_parallel_flags(*cmd, *flags);
        cmd->callback([parallel, flags] { pipeline_command(parallel, *flags); });
    }
}

}  // namespace paft
