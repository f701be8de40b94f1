// Full-parameter pre-training of a small Llama-shaped model from random initialisation on a text
// corpus (`paft pretrain`).
//
// Data flow:
//   corpus.jsonl {"text"} (or pre-tokenized {"input_ids"}) -> tokens (special tokens as the
//   tokenizer adds them, then EOS) -> documents cut into chunks of at most seq_len tokens ->
//   packed into rows of seq_len (best-fit decreasing, attention kept inside each chunk) ->
//   per epoch a seeded shuffle of the rows -> optimizer steps of batch_size x
//   gradient_accumulation_steps rows: forward + backward with every parameter's gradient (mean
//   token cross-entropy of the step), clip by global norm, AdamW at the schedule's rate.
//
// Weight decay is decoupled (AdamW's p (1 - lr wd)) and applies to the matrices (embeddings,
// projections, LM head: every tensor with two dimensions) only, not to norms and biases, as nanoGPT
// and Hugging Face's usual parameter groups do.
//
// Files in the output folder (each written as a temporary file renamed into place):
//   config.json, model.safetensors, generation_config.json, the tokenizer's files   the model
//   paft_pretrain.json     the resolved options and the run's derived sizes
//   metrics.jsonl          one line per logging step: loss, grad_norm, learning_rate, num_tokens,
//                          epoch, step (loss is the mean over the steps since the last line)
//   checkpoint-<step>/     every save_steps steps and at the end: model.safetensors (f32),
//                          optimizer.safetensors, trainer_state.json (as the LoRA trainer's)
// --resume continues from the newest checkpoint and ends with the same files, byte for byte, as a
// run never interrupted (same thread count).
#pragma once

#include "data/packing.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"
#include "train/step_loop.h"

#include <cstdint>
#include <string>
#include <vector>

namespace paft {

struct PretrainOptions {
    std::string data;           // JSON Lines: {"text": ...} or {"input_ids": [...]} per document
    std::string tokenizer_dir;  // its vocabulary sizes the model; its files are copied to the output
    std::string output_dir;
    std::string preset = "paft-tiny";  // the model shape (model/presets.h) ...
    std::string model_config;          // ... or a config.json to take it from instead
    int         seq_len                     = 256;  // tokens per row
    int         batch_size                  = 16;   // rows per micro-batch
    int         gradient_accumulation_steps = 1;
    double      learning_rate               = 2e-3;
    int         epochs                      = 1;
    long        max_steps                   = -1;  // > 0 overrides epochs
    double      warmup_ratio                = 0.05;
    std::string lr_scheduler_type           = "cosine";
    double      weight_decay                = 0.1;
    double      max_grad_norm               = 1.0;
    double      adam_beta2                  = 0.95;
    uint64_t    seed                        = 0;  // initialisation and row order
    int         threads                     = 0;  // 0: every core
    long        save_steps                  = 0;  // 0: a checkpoint at the end only
    long        logging_steps               = 10;
    bool        resume                      = false;
    bool        overwrite                   = false;  // a folder with files but no checkpoint may be written
    std::string dtype                       = "f32";  // of the written model: f32 | bf16
    bool        plain_progress              = false;  // plain progress lines even on a terminal
};

// The step loop's figures for this process (steps, tokens, seconds, last_loss), and:
struct PretrainSummary : StepLoopResult {
    bool resumed = false;
};

// InputError naming the option when one is out of range.
void validate(const PretrainOptions & options);

// The shape to train: the preset or model_config, with vocab_size (every token id, added tokens
// included) and bos/eos ids from the tokenizer.
ModelConfig pretrain_model_config(const PretrainOptions & options, const Tokenizer & tokenizer);

// The corpus as packed rows: each document's tokens cut into chunks of at most seq_len, packed as
// pack_examples does (every chunk's first token is not a target). InputError naming FILE:LINE for
// a bad record, or the file when no document has two tokens.
std::vector<PackedRow> pretrain_rows(const PretrainOptions & options, const Tokenizer & tokenizer, int vocab_size);

// The row order of epoch `epoch`: a Fisher-Yates shuffle of 0..rows-1 seeded by (seed, epoch).
std::vector<size_t> epoch_order(size_t rows, uint64_t seed, long epoch);

// Trains and writes the files above; RuntimeFailure on a NaN/Inf loss or gradient norm.
PretrainSummary run_pretrain(const PretrainOptions & options);

}  // namespace paft
