// Everything a training run is configured by: the flags of `paft sft|dpo|orpo` and the keys of a
// YAML recipe (recipe.h), named as Hugging Face's TrainingArguments, TRL's configs and the
// alignment-handbook's recipes name them. Defaults are TRL's where TRL has one.
#pragma once

#include "data/dataset.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#include <cstdint>
#include <string>

namespace paft {

enum class Method { sft, dpo, orpo };

Method       method_from_name(const std::string & name);  // "sft" | "dpo" | "orpo"; InputError otherwise
const char * method_name(Method method);

struct TrainOptions {
    Method method = Method::sft;

    // Inputs and output
    std::string model;            // model_name_or_path: a Hugging Face model directory
    std::string tokenizer;        // tokenizer directory; empty = the model's (unused for pre-tokenized data)
    std::string chat_template;    // "" (the tokenizer's), a built-in name, or a .jinja file
    std::string train_data;       // JSON Lines / JSON file
    std::string eval_data;        // optional
    std::string output_dir;
    std::string init_adapter;     // start from this PEFT adapter instead of a fresh one

    // The base's loading (transformers' from_pretrained and BitsAndBytesConfig)
    std::string torch_dtype               = "auto";  // auto (as stored), float32, bfloat16, float16
    bool        load_in_8bit              = false;
    bool        load_in_4bit              = false;
    std::string bnb_4bit_quant_type       = "nf4";   // nf4 or fp4
    bool        bnb_4bit_use_double_quant = false;

    // LoRA (PEFT's LoraConfig; the handbook's lora_* keys)
    LoraConfig lora;              // r 16, alpha 32, dropout 0.05, all seven linear modules (set in defaults())

    // Optimization (TrainingArguments)
    OptimizerConfig optimizer;
    double          learning_rate               = 2e-5;  // TRL SFT default; DPO and ORPO: 1e-6
    ScheduleType    lr_scheduler_type           = ScheduleType::linear;
    double          warmup_ratio                = 0.0;
    long            warmup_steps                = 0;
    double          num_train_epochs            = 3.0;
    long            max_steps                   = -1;    // > 0 overrides epochs
    int             per_device_train_batch_size = 8;
    int             per_device_eval_batch_size  = 8;
    int             gradient_accumulation_steps = 1;
    double          max_grad_norm               = 1.0;   // 0 = no clipping
    uint64_t        seed                        = 42;
    int             threads                     = 0;     // 0 = every core
    bool            gradient_checkpointing      = false;

    // Logging and checkpoints (in optimizer steps; 0 = never)
    long logging_steps = 10;
    long eval_steps    = 0;   // 0 = at the end only, when there is eval data
    long save_steps    = 500;
    bool resume        = false;

    // Data (TRL's SFTConfig / DPOConfig)
    DataOptions data;          // max_length, max_prompt_length, assistant_only_loss, completion_only_loss
    bool        packing = false;

    // SFT: the PAFT paper's L1 penalty on delta W = s B A
    double l1_lambda          = 0.0;
    double sparsity_threshold = 1e-5;

    // Preferences (DPO / ORPO)
    PreferenceConfig preference;

    // Model::load's options from the loading keys; InputError for 4 and 8 bits at once.
    LoadOptions load_options() const;

    // The defaults of `method` (learning rate, loss), before a recipe or flags change them.
    static TrainOptions defaults(Method method);
};

// InputError naming the option when a value is out of range (batch size < 1, beta <= 0, ...).
void validate(const TrainOptions & options);

}  // namespace paft
