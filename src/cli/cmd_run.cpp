// paft run: the whole PAFT comparison from one recipe (src/run/experiment.h), with its report.
// Under mpirun its trainings and evaluations are shared among the ranks (src/run/stages.h).
#include "cli/commands.h"
#include "core/communicator.h"
#include "core/error.h"
#include "io/fs.h"
#include "run/experiment.h"
#include "run/plan.h"

#include <fmt/format.h>

namespace paft {

void register_run(CLI::App & app) {
    struct Options {
        std::string recipe, out, plan_json;
        int         threads = -1;
        bool        plan    = false;
    };
    auto   opt = std::make_shared<Options>();
    auto * cmd = app.add_subcommand("run", "The PAFT experiment from a recipe: SFT, sparse SFT and preference "
                                           "adapters, sequential and merged models, all evaluated, with a report");
    cmd->add_option("recipe", opt->recipe, "The run's YAML recipe (e.g. recipes/paft-default.yaml)")->required();
    cmd->add_option("--out", opt->out, "Output folder (overrides the recipe's output_dir)");
    cmd->add_option("--threads", opt->threads, "Threads for every stage (overrides the recipe; 0 = every core)")
        ->check(CLI::Validator(
            [](std::string & v) {
                return !v.empty() && v[0] == '-' ? std::string("must be at least 0 (0 = every core)") : std::string();
            },
            "INT >= 0"));
    cmd->add_flag("--plan", opt->plan,
                  "Print each stage's expected peak memory against this machine's and run nothing (exit 1 when a "
                  "stage cannot fit)");
    cmd->add_option("--plan-json", opt->plan_json, "With --plan: also write the plan as JSON to this file");
    cmd->callback([opt]() {
        RunRecipe recipe = read_run_recipe(opt->recipe, opt->out);
        if (opt->threads >= 0) {
            recipe.train.threads = opt->threads;
        }
        if (!opt->plan_json.empty() && !opt->plan) {
            throw InputError("--plan-json goes with --plan");
        }
        if (opt->plan && world().size() > 1) {
            throw InputError("--plan looks at this machine alone: run it without mpirun");
        }
        if (opt->plan) {
            const RunPlan plan = plan_run(recipe);
            fmt::print("{}", plan.table());
            if (!opt->plan_json.empty()) {
                write_file_atomic(opt->plan_json, plan.json().dump(2) + "\n");
            }
            check_plan_fits(plan);
            return;
        }
        const RunSummary s = run_experiment(recipe);
        if (world().rank() != 0) {  // rank 0 reports
            return;
        }
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
