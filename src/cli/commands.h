// The subcommands: each registers its options and a callback that runs it.
#pragma once

#include <CLI/CLI.hpp>

namespace paft {

void register_score(CLI::App & app);       // paft score
void register_init_model(CLI::App & app);  // paft init-model
void register_tokenize(CLI::App & app);    // paft tokenize
void register_train(CLI::App & app);       // paft sft, dpo, orpo, parallel, sequential
void register_pretrain(CLI::App & app);    // paft pretrain
void register_merge(CLI::App & app);       // paft merge
void register_sparsity(CLI::App & app);    // paft sparsity
void register_generate(CLI::App & app);    // paft generate
void register_chat(CLI::App & app);        // paft chat
void register_eval(CLI::App & app);        // paft eval
void register_synth(CLI::App & app);       // paft synth
void register_run(CLI::App & app);         // paft run
void register_export(CLI::App & app);      // paft export

}  // namespace paft
