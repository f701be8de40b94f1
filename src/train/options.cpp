// Training options: the methods' defaults (TRL's) and the range checks that run before training.
#include "train/options.h"

#include "core/error.h"
#include "io/fs.h"
#include "train/recipe.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

namespace paft {

Method method_from_name(const std::string & name) {
    if (name == "sft") {
        return Method::sft;
    }
    if (name == "dpo") {
        return Method::dpo;
    }
    if (name == "orpo") {
        return Method::orpo;
    }
    throw InputError(fmt::format("unknown training method '{}' (sft, dpo, orpo)", name));
}

const char * method_name(Method method) {
    switch (method) {
        case Method::sft: return "sft";
        case Method::dpo: return "dpo";
        case Method::orpo: return "orpo";
    }
    return "?";
}

TrainOptions TrainOptions::defaults(Method method) {
    TrainOptions o;
    o.method = method;
    // TRL's ModelConfig: lora_r 16, lora_alpha 32, lora_dropout 0.05. It leaves the targets to
    // PEFT; we take every linear layer of the decoder (the handbook's choice, and PEFT's all-linear).
    o.lora.r       = 16;
    o.lora.alpha   = 32.0f;
    o.lora.dropout = 0.05f;
    o.lora.rslora  = false;
    o.lora.targets.fill(true);
    // SFTConfig's learning rate is 2e-5; DPOConfig's and ORPOConfig's 1e-6.
    o.learning_rate = method == Method::sft ? 2e-5 : 1e-6;
    o.preference.beta = 0.1;
    o.preference.loss = method == Method::orpo ? PreferenceLoss::orpo : PreferenceLoss::sigmoid;
    return o;
}

namespace {

// Throws "LABEL must be REQUIREMENT, got VALUE" with LABEL naming the recipe key and its flag.
template <typename T>
void require(bool ok, const char * key, const char * requirement, const T & value) {
    if (!ok) {
        throw InputError(fmt::format("{} must be {}, got {}", option_label(key), requirement, value));
    }
}

void require_given(const std::string & value, const char * key) {
    if (value.empty()) {
        throw InputError(fmt::format("{} is required", option_label(key)));
    }
}

bool finite(double x) {
    return std::isfinite(x);
}

void validate_lora(const LoraConfig & lora) {
    require(lora.r >= 1, "lora_r", "at least 1", lora.r);
    require(finite(lora.alpha) && lora.alpha > 0, "lora_alpha", "positive", lora.alpha);
    require(lora.dropout >= 0 && lora.dropout < 1, "lora_dropout", "in [0, 1)", lora.dropout);
    bool any = false;
    for (bool t : lora.targets) {
        any = any || t;
    }
    if (!any) {
        throw InputError(fmt::format("{} names no module", option_label("lora_target_modules")));
    }
}

// torch.optim's own argument checks.
void validate_optimizer(const OptimizerConfig & opt) {
    if (opt.name != "adamw" && opt.name != "sgd") {
        throw InputError(fmt::format("{}: unknown optimizer '{}' (adamw, sgd)", option_label("optim"), opt.name));
    }
    require(opt.beta1 >= 0 && opt.beta1 < 1, "adam_beta1", "in [0, 1)", opt.beta1);
    require(opt.beta2 >= 0 && opt.beta2 < 1, "adam_beta2", "in [0, 1)", opt.beta2);
    require(finite(opt.eps) && opt.eps >= 0, "adam_epsilon", "at least 0", opt.eps);
    require(finite(opt.momentum) && opt.momentum >= 0, "momentum", "at least 0", opt.momentum);
    require(finite(opt.weight_decay) && opt.weight_decay >= 0, "weight_decay", "at least 0", opt.weight_decay);
}

void validate_steps(const TrainOptions & o) {
    require(finite(o.learning_rate) && o.learning_rate >= 0, "learning_rate", "at least 0", o.learning_rate);
    require(o.warmup_ratio >= 0 && o.warmup_ratio <= 1, "warmup_ratio", "in [0, 1]", o.warmup_ratio);
    require(o.warmup_steps >= 0, "warmup_steps", "at least 0", o.warmup_steps);
    require(o.max_steps == -1 || o.max_steps > 0, "max_steps", "positive, or -1 to train num_train_epochs",
            o.max_steps);
    if (o.max_steps <= 0) {
        require(finite(o.num_train_epochs) && o.num_train_epochs > 0, "num_train_epochs",
                "positive (or give max_steps)", o.num_train_epochs);
    }
    require(o.per_device_train_batch_size >= 1, "per_device_train_batch_size", "at least 1",
            o.per_device_train_batch_size);
    require(o.per_device_eval_batch_size >= 1, "per_device_eval_batch_size", "at least 1",
            o.per_device_eval_batch_size);
    require(o.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "at least 1",
            o.gradient_accumulation_steps);
    require(finite(o.max_grad_norm) && o.max_grad_norm >= 0, "max_grad_norm", "at least 0 (0 = no clipping)",
            o.max_grad_norm);
    require(o.threads >= 0, "threads", "at least 0 (0 = every core)", o.threads);
    require(o.logging_steps >= 0, "logging_steps", "at least 0", o.logging_steps);
    require(o.eval_steps >= 0, "eval_steps", "at least 0", o.eval_steps);
    require(o.save_steps >= 0, "save_steps", "at least 0", o.save_steps);
}

void validate_data(const TrainOptions & o) {
    require(o.data.max_length >= 0, "max_length", "at least 0 (0 = no limit)", o.data.max_length);
    require(o.data.max_prompt_length >= 0, "max_prompt_length", "at least 0 (0 = no limit)",
            o.data.max_prompt_length);
    // A prompt that fills max_length leaves no completion to compare (TRL drops such pairs; a
    // setting that drops every long prompt's pair is a mistake, not a choice).
    if (o.method != Method::sft && o.data.max_length > 0 && o.data.max_prompt_length >= o.data.max_length) {
        throw InputError(fmt::format("{} ({}) must be less than {} ({})", option_label("max_prompt_length"),
                                     o.data.max_prompt_length, option_label("max_length"), o.data.max_length));
    }
    if (o.packing) {
        if (o.method != Method::sft) {
            throw InputError(fmt::format("{} is for sft (TRL does not pack preference pairs)", option_label("packing")));
        }
        require(o.data.max_length > 0, "max_length", "positive with packing (the row length)", o.data.max_length);
    }
}

void validate_objective(const TrainOptions & o) {
    require(finite(o.l1_lambda) && o.l1_lambda >= 0, "l1_lambda", "at least 0", o.l1_lambda);
    require(finite(o.sparsity_threshold) && o.sparsity_threshold >= 0, "sparsity_threshold", "at least 0",
            o.sparsity_threshold);
    if (o.method == Method::sft) {
        return;  // the preference settings are unused
    }
    const PreferenceConfig & p = o.preference;
    require(finite(p.beta) && p.beta > 0, "beta", "positive", p.beta);
    require(p.label_smoothing >= 0 && p.label_smoothing < 0.5, "label_smoothing", "in [0, 0.5)", p.label_smoothing);
    require(finite(p.simpo_gamma), "simpo_gamma", "a finite number", p.simpo_gamma);
    const bool orpo_loss = p.loss == PreferenceLoss::orpo;
    if (orpo_loss != (o.method == Method::orpo)) {
        throw InputError(fmt::format("{} must be {} for {}", option_label("loss_type"),
                                     o.method == Method::orpo ? "orpo" : "one of sigmoid, ipo, hinge, robust, simpo",
                                     method_name(o.method)));
    }
}

}  // namespace

void validate(const TrainOptions & o) {
    require_given(o.model, "model_name_or_path");
    require_given(o.train_data, "train_data");
    require_given(o.output_dir, "output_dir");
    validate_lora(o.lora);
    validate_optimizer(o.optimizer);
    validate_steps(o);
    validate_data(o);
    validate_objective(o);
    // A chat template given as a name ("chatml") is no file of the user's.
    const bool template_file = is_file(o.chat_template);
    check_output_apart(o.output_dir, "output_dir (--out)",
                       {{o.model, "model_name_or_path (--model)"},
                        {o.init_adapter, "init_adapter"},
                        {o.train_data, "train_data (--data)"},
                        {o.eval_data, "eval_data"},
                        {o.tokenizer, "tokenizer"},
                        {template_file ? o.chat_template : "", "chat_template"}});
}

LoadOptions TrainOptions::load_options() const {
    return model_load_options(torch_dtype, load_in_8bit, load_in_4bit, bnb_4bit_quant_type, bnb_4bit_use_double_quant);
}

}  // namespace paft
