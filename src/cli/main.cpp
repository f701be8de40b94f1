// paft: the command-line program, a thin layer over the library.
// Exit codes: 0 success, 2 bad input or usage, 1 failure at run time.
#include "cli/commands.h"
#include "core/communicator.h"
#include "core/error.h"
#include "io/nonfinite.h"
#include "io/output_lock.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <new>
#include <string>
#include <thread>

int main(int argc, char ** argv) {
    CLI::App app{"paft: parallel fine-tuning (SFT + preference alignment as LoRA adapters, then merging)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "paft 0.1.0");
    paft::register_score(app);
    paft::register_init_model(app);
    paft::register_tokenize(app);
    paft::register_train(app);
    paft::register_pretrain(app);
    paft::register_merge(app);
    paft::register_sparsity(app);
    paft::register_generate(app);
    paft::register_chat(app);
    paft::register_eval(app);
    paft::register_synth(app);
    paft::register_run(app);
    paft::register_export(app);
    // One flag of every command: read weights with NaN or Inf, and write such results (io/nonfinite.h).
    for (CLI::App * sub : app.get_subcommands({})) {
        sub->add_flag_callback("--allow-nonfinite", [] { paft::set_nonfinite_allowed(true); },
                               "Read weights holding NaN or Inf, and write non-finite results, instead of "
                               "refusing them");
    }
    {
        std::string command = "paft";
        for (int i = 1; i < argc; i++) {
            command.append(" ").append(argv[i]);
        }
        paft::OutputLock::set_command(command.size() > 300 ? command.substr(0, 300) + " ..." : command);
    }
    bool known = false;
    for (const CLI::App * sub : app.get_subcommands({})) {
        known = known || (argc > 1 && sub->get_name() == argv[1]);
    }
    if (argc > 1 && argv[1][0] != '-' && !known) {
        fmt::print(stderr, "paft: error: unknown command '{}' (commands: score, init-model, tokenize, sft, dpo, orpo, parallel, sequential, pretrain, merge, sparsity, generate, chat, eval, synth, run, export; see paft --help)\n",
                   argv[1]);
        return 2;
    }
    // Under mpirun/srun: the commands whose work is split across the ranks. The others would run
    // once per rank and write the same files.
    const int ranks = paft::world().size();
    if (ranks > 1 && argc > 1) {
        const std::string command = argv[1];
        if (command != "sft" && command != "dpo" && command != "orpo" && command != "pretrain" &&
            command != "parallel" && command != "sequential" && command != "run" && command != "eval" &&
            command != "generate") {
            if (paft::world().rank() == 0) {
                fmt::print(stderr, "paft: error: '{}' does not run across MPI ranks (sft, dpo, orpo, pretrain, "
                                   "parallel, sequential, run, eval and generate --data do); run it without "
                                   "mpirun\n",
                           command);
            }
            paft::world().barrier();  // rank 0's message is out before any rank aborts the job
            paft::abort_job(2);
        }
    }
    // An error's message, once per job: under MPI every rank usually meets the same bad input, and
    // rank 0 reports it and stops the job. Another rank waits a moment for that before it reports
    // its own (a file missing on its machine alone), naming itself.
    const auto report = [](const std::string & message) {
        paft::Communicator & w = paft::world();
        if (w.size() > 1 && w.rank() != 0) {
            std::this_thread::sleep_for(std::chrono::seconds(3));
            fmt::print(stderr, "paft: error: rank {}: {}\n", w.rank(), message);
        } else {
            fmt::print(stderr, "paft: error: {}\n", message);
        }
    };
    const auto fail = [](int code) {
        paft::abort_job(code);  // under MPI: every rank stops, none waits for this one
        return code;
    };
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError & e) {
        if (e.get_exit_code() == 0) {
            return app.exit(e);  // --help, --version
        }
        fmt::print(stderr, "paft: error: {}\nRun with --help for more information.\n", e.what());
        return 2;
    } catch (const paft::InputError & e) {
        report(e.what());
        return fail(2);
    } catch (const std::bad_alloc &) {
        report("out of memory");
        return fail(1);
    } catch (const std::exception & e) {
        report(e.what());
        return fail(1);
    }
    return 0;
}
