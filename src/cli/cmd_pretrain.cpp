// paft pretrain: full-parameter pre-training of a small model from random initialisation.
#include "cli/commands.h"
#include "core/communicator.h"
#include "train/pretrain.h"

#include <fmt/format.h>

#include <memory>

namespace paft {

void register_pretrain(CLI::App & app) {
    auto   o   = std::make_shared<PretrainOptions>();
    auto * cmd = app.add_subcommand("pretrain", "Pre-train a small model from random initialisation on a text corpus");
    cmd->add_option("--data", o->data, "Corpus, JSON Lines: {\"text\": ...} (or {\"input_ids\": [...]}) per document")
        ->required();
    cmd->add_option("--tokenizer", o->tokenizer_dir, "Tokenizer folder (sizes the vocabulary; copied to --out)")
        ->required();
    cmd->add_option("--out", o->output_dir, "Output model folder")->required();
    cmd->add_option("--preset", o->preset, "Model shape (tiny, paft-tiny, llama-20m, llama-120m)")
        ->capture_default_str();
    cmd->add_option("--model-config", o->model_config, "A config.json to take the shape from instead of --preset");
    cmd->add_option("--seq-len", o->seq_len, "Tokens per packed row")->capture_default_str();
    cmd->add_option("--batch-size", o->batch_size, "Rows per micro-batch")->capture_default_str();
    cmd->add_option("--gradient-accumulation-steps", o->gradient_accumulation_steps, "Micro-batches per step")
        ->capture_default_str();
    cmd->add_option("--learning-rate", o->learning_rate, "Peak learning rate")->capture_default_str();
    cmd->add_option("--epochs", o->epochs, "Passes over the corpus")->capture_default_str();
    cmd->add_option("--max-steps", o->max_steps, "Optimizer steps (overrides --epochs)")->capture_default_str();
    cmd->add_option("--warmup-ratio", o->warmup_ratio, "Share of the steps with a linear warmup")->capture_default_str();
    cmd->add_option("--lr-scheduler-type", o->lr_scheduler_type,
                    "constant, constant_with_warmup, linear, cosine, inverse_sqrt")
        ->capture_default_str();
    cmd->add_option("--weight-decay", o->weight_decay, "AdamW's decoupled decay (matrices only)")->capture_default_str();
    cmd->add_option("--max-grad-norm", o->max_grad_norm, "Clip the gradient's global norm (0: no clipping)")
        ->capture_default_str();
    cmd->add_option("--adam-beta2", o->adam_beta2, "AdamW's beta2")->capture_default_str();
    cmd->add_option("--seed", o->seed, "Initialisation and row order")->capture_default_str();
    cmd->add_option("--threads", o->threads, "Threads (0: every core)")->capture_default_str();
    cmd->add_option("--save-steps", o->save_steps, "A checkpoint every N steps (0: at the end only)")
        ->capture_default_str();
    cmd->add_option("--logging-steps", o->logging_steps, "A metrics.jsonl line every N steps")->capture_default_str();
    cmd->add_flag("--resume", o->resume, "Continue from the newest checkpoint in --out");
    cmd->add_flag("--overwrite", o->overwrite, "Start afresh in an --out folder that holds files but no run");
    cmd->add_option("--dtype", o->dtype, "Stored dtype of the model: f32, bf16")->capture_default_str();
    cmd->callback([o]() {
        const PretrainSummary s = run_pretrain(*o);
        if (world().rank() != 0) {
            return;
        }
        fmt::print("pretrain   {} steps  {} tokens  {:.1f} s  {:.0f} tok/s  loss {:.4f}  -> {}\n", s.steps, s.tokens,
                   s.seconds, s.seconds > 0 ? (double) s.tokens / s.seconds : 0.0, s.last_loss, o->output_dir);
    });
}

}  // namespace paft
