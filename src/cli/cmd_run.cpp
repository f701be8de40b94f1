// paft run: the whole PAFT comparison from one recipe (src/run/experiment.h), with its report.
#include "cli/commands.h"
#include "core/error.h"
#include "run/experiment.h"

#include <fmt/format.h>

namespace paft {

void register_run(CLI::App & app) {
    struct Options {
        std::string recipe, out;
        int         threads = -1;
    };
    auto   opt = std::make_shared<Options>();
    auto * cmd = app.add_subcommand("run", "The PAFT experiment from a recipe: SFT, sparse SFT and preference "
                                           "adapters, sequential and merged models, all evaluated, with a report");
    cmd->add_option("recipe", opt->recipe, "The run's YAML recipe (e.g. recipes/paft-default.yaml)")->required();
    cmd->add_option("--out", opt->out, "Output folder (overrides the recipe's output_dir)");
    cmd->add_option("--threads", opt->threads, "Threads for every stage (overrides the recipe; 0 = every core)");
    cmd->callback([opt]() {
        RunRecipe recipe = read_run_recipe(opt->recipe, opt->out);
        if (opt->threads >= 0) {
            recipe.train.threads = opt->threads;
        }
        const RunSummary s = run_experiment(recipe);
        fmt::print("\n{}\n", s.table);
        fmt::print("report: {} ({:.1f} s", s.report, s.seconds);
        int reused = 0;
        for (const StageRecord & r : s.stages) {
            reused += r.reused;
        }
        if (reused > 0) {
            fmt::print("; {} of {} stages reused from an earlier run", reused, s.stages.size());
        }
        fmt::print(")\n");
    });
}

}  // namespace paft
