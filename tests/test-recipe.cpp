// Training options, YAML recipes and command-line flags: the methods' defaults, every kind of
// value in a recipe, flags over recipes, errors naming FILE:LINE and the key, ignored handbook
// keys, recipe_yaml read back to the same options, validate(), parallel recipes, and the example
// recipes in recipes/. Expected values come from the YAML and flags written here.
#include "train/options.h"
#include "train/recipe.h"

#include "test_util.h"

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace paft;

namespace {

const fs::path kSource = PAFT_SOURCE_DIR;

// Writes `text` as NAME in the test's own folder (emptied once, when the test writes its first
// file) and returns its path.
std::string write_recipe(const std::string & text, const std::string & name = "recipe.yaml") {
    static const testing::TestInfo * owner = nullptr;
    static fs::path                  dir;
    const testing::TestInfo *        test  = testing::UnitTest::GetInstance()->current_test_info();
    if (test != owner) {
        owner = test;
        dir   = fresh_test_folder("paft-recipe");
    }
    const fs::path path = dir / name;
    std::ofstream(path) << text;
    return path.string();
}

TrainOptions from_recipe(Method method, const std::string & text) {
    TrainOptions o = TrainOptions::defaults(method);
    apply_recipe(write_recipe(text), o);
    return o;
}

// CLI11 parses a vector of arguments from its back.
void parse_args(CLI::App & app, std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());
    app.parse(args);
}

TrainOptions from_args(Method method, const std::vector<std::string> & args) {
    CLI::App   app;
    TrainFlags flags;
    add_train_flags(app, flags);
    parse_args(app, args);
    return resolve_train_options(method, flags);
}

ParallelOptions parallel_from_args(const std::vector<std::string> & args) {
    CLI::App      app;
    ParallelFlags flags;
    add_parallel_flags(app, flags);
    parse_args(app, args);
    return resolve_parallel_options(flags);
}

std::array<bool, TARGET_COUNT> targets(std::initializer_list<int> on) {
    std::array<bool, TARGET_COUNT> t{};
    for (int i : on) {
        t[i] = true;
    }
    return t;
}

const std::array<bool, TARGET_COUNT> kAllTargets = {true, true, true, true, true, true, true};

// Every field of TrainOptions (a field missing here, or from the recipe table, shows up as a
// failed round trip).
void expect_same(const TrainOptions & a, const TrainOptions & b) {
    EXPECT_EQ(a.method, b.method);
    EXPECT_EQ(a.model, b.model);
    EXPECT_EQ(a.tokenizer, b.tokenizer);
    EXPECT_EQ(a.chat_template, b.chat_template);
    EXPECT_EQ(a.train_data, b.train_data);
    EXPECT_EQ(a.eval_data, b.eval_data);
    EXPECT_EQ(a.output_dir, b.output_dir);
    EXPECT_EQ(a.init_adapter, b.init_adapter);
    EXPECT_EQ(a.lora.r, b.lora.r);
    EXPECT_EQ(a.lora.alpha, b.lora.alpha);
    EXPECT_EQ(a.lora.dropout, b.lora.dropout);
    EXPECT_EQ(a.lora.rslora, b.lora.rslora);
    EXPECT_EQ(a.lora.targets, b.lora.targets);
    EXPECT_EQ(a.optimizer.name, b.optimizer.name);
    EXPECT_EQ(a.optimizer.beta1, b.optimizer.beta1);
    EXPECT_EQ(a.optimizer.beta2, b.optimizer.beta2);
    EXPECT_EQ(a.optimizer.eps, b.optimizer.eps);
    EXPECT_EQ(a.optimizer.momentum, b.optimizer.momentum);
    EXPECT_EQ(a.optimizer.weight_decay, b.optimizer.weight_decay);
    EXPECT_EQ(a.learning_rate, b.learning_rate);
    EXPECT_EQ(a.lr_scheduler_type, b.lr_scheduler_type);
    EXPECT_EQ(a.warmup_ratio, b.warmup_ratio);
    EXPECT_EQ(a.warmup_steps, b.warmup_steps);
    EXPECT_EQ(a.num_train_epochs, b.num_train_epochs);
    EXPECT_EQ(a.max_steps, b.max_steps);
    EXPECT_EQ(a.per_device_train_batch_size, b.per_device_train_batch_size);
    EXPECT_EQ(a.per_device_eval_batch_size, b.per_device_eval_batch_size);
    EXPECT_EQ(a.gradient_accumulation_steps, b.gradient_accumulation_steps);
    EXPECT_EQ(a.max_grad_norm, b.max_grad_norm);
    EXPECT_EQ(a.seed, b.seed);
    EXPECT_EQ(a.threads, b.threads);
    EXPECT_EQ(a.gradient_checkpointing, b.gradient_checkpointing);
    EXPECT_EQ(a.logging_steps, b.logging_steps);
    EXPECT_EQ(a.eval_steps, b.eval_steps);
    EXPECT_EQ(a.save_steps, b.save_steps);
    EXPECT_EQ(a.resume, b.resume);
    EXPECT_EQ(a.data.max_length, b.data.max_length);
    EXPECT_EQ(a.data.max_prompt_length, b.data.max_prompt_length);
    EXPECT_EQ(a.data.assistant_only_loss, b.data.assistant_only_loss);
    EXPECT_EQ(a.data.completion_only_loss, b.data.completion_only_loss);
    EXPECT_EQ(a.packing, b.packing);
    EXPECT_EQ(a.l1_lambda, b.l1_lambda);
    EXPECT_EQ(a.sparsity_threshold, b.sparsity_threshold);
    EXPECT_EQ(a.preference.loss, b.preference.loss);
    EXPECT_EQ(a.preference.beta, b.preference.beta);
    EXPECT_EQ(a.preference.label_smoothing, b.preference.label_smoothing);
    EXPECT_EQ(a.preference.simpo_gamma, b.preference.simpo_gamma);
    EXPECT_EQ(a.preference.orpo_prompt_nll, b.preference.orpo_prompt_nll);
}

// An SFT recipe that sets every key SFT uses to a value other than its default.
const char * kSftRecipe = R"(# every SFT key
method: sft
model_name_or_path: models/my model
tokenizer_name_or_path: "tok: dir"
chat_template: zephyr
train_data: data/train.jsonl
eval_data: data/eval.jsonl
output_dir: out/run#1
init_adapter: adapters/start
lora_r: 32
lora_alpha: 64.5
lora_dropout: 0.1
lora_target_modules:
  - q_proj
  - v_proj
use_rslora: yes
optim: sgd
adam_beta1: 0.8
adam_beta2: 0.99
adam_epsilon: 1.0e-6
momentum: 0.5
weight_decay: 0.01
learning_rate: 2.0e-4
lr_scheduler_type: cosine
warmup_ratio: 0.05
warmup_steps: 7
num_train_epochs: 2.5
max_steps: 100
per_device_train_batch_size: 3
per_device_eval_batch_size: 5
gradient_accumulation_steps: 4
max_grad_norm: 0.5
seed: 1234
threads: 6
gradient_checkpointing: true
logging_steps: 3
eval_steps: 50
save_steps: 0
max_seq_length: 2048
packing: True
assistant_only_loss: false
completion_only_loss: off
l1_lambda: 1e-4
sparsity_threshold: 1.0e-6
)";

// ---- Defaults -----------------------------------------------------------------------------------

TEST(Options, MethodNames) {
    EXPECT_EQ(method_from_name("sft"), Method::sft);
    EXPECT_EQ(method_from_name("dpo"), Method::dpo);
    EXPECT_EQ(method_from_name("orpo"), Method::orpo);
    EXPECT_STREQ(method_name(Method::orpo), "orpo");
    expect_input_error([] { method_from_name("kto"); }, {"kto", "sft, dpo, orpo"});
}

TEST(Options, DefaultsPerMethod) {
    const TrainOptions sft = TrainOptions::defaults(Method::sft);
    EXPECT_EQ(sft.method, Method::sft);
    EXPECT_EQ(sft.learning_rate, 2e-5);
    EXPECT_EQ(sft.lora.r, 16);
    EXPECT_EQ(sft.lora.alpha, 32.0f);
    EXPECT_EQ(sft.lora.dropout, 0.05f);
    EXPECT_FALSE(sft.lora.rslora);
    EXPECT_EQ(sft.lora.targets, kAllTargets);
    EXPECT_EQ(sft.optimizer.name, "adamw");
    EXPECT_EQ(sft.lr_scheduler_type, ScheduleType::linear);
    EXPECT_EQ(sft.data.max_length, 1024);

    const TrainOptions dpo = TrainOptions::defaults(Method::dpo);
    EXPECT_EQ(dpo.learning_rate, 1e-6);
    EXPECT_EQ(dpo.preference.beta, 0.1);
    EXPECT_EQ(dpo.preference.loss, PreferenceLoss::sigmoid);
    EXPECT_EQ(dpo.lora.r, 16);

    const TrainOptions orpo = TrainOptions::defaults(Method::orpo);
    EXPECT_EQ(orpo.method, Method::orpo);
    EXPECT_EQ(orpo.learning_rate, 1e-6);
    EXPECT_EQ(orpo.preference.beta, 0.1);
    EXPECT_EQ(orpo.preference.loss, PreferenceLoss::orpo);
    EXPECT_EQ(orpo.lora.targets, kAllTargets);
}

// ---- YAML values ----------------------------------------------------------------------------------

TEST(Recipe, EverySftKey) {
    const TrainOptions o = from_recipe(Method::sft, kSftRecipe);
    EXPECT_EQ(o.model, "models/my model");
    EXPECT_EQ(o.tokenizer, "tok: dir");
    EXPECT_EQ(o.chat_template, "zephyr");
    EXPECT_EQ(o.train_data, "data/train.jsonl");
    EXPECT_EQ(o.eval_data, "data/eval.jsonl");
    EXPECT_EQ(o.output_dir, "out/run#1");
    EXPECT_EQ(o.init_adapter, "adapters/start");
    EXPECT_EQ(o.lora.r, 32);
    EXPECT_EQ(o.lora.alpha, 64.5f);
    EXPECT_EQ(o.lora.dropout, 0.1f);
    EXPECT_EQ(o.lora.targets, targets({TARGET_Q, TARGET_V}));
    EXPECT_TRUE(o.lora.rslora);
    EXPECT_EQ(o.optimizer.name, "sgd");
    EXPECT_EQ(o.optimizer.beta1, 0.8);
    EXPECT_EQ(o.optimizer.beta2, 0.99);
    EXPECT_EQ(o.optimizer.eps, 1e-6);
    EXPECT_EQ(o.optimizer.momentum, 0.5);
    EXPECT_EQ(o.optimizer.weight_decay, 0.01);
    EXPECT_EQ(o.learning_rate, 2e-4);
    EXPECT_EQ(o.lr_scheduler_type, ScheduleType::cosine);
    EXPECT_EQ(o.warmup_ratio, 0.05);
    EXPECT_EQ(o.warmup_steps, 7);
    EXPECT_EQ(o.num_train_epochs, 2.5);
    EXPECT_EQ(o.max_steps, 100);
    EXPECT_EQ(o.per_device_train_batch_size, 3);
    EXPECT_EQ(o.per_device_eval_batch_size, 5);
    EXPECT_EQ(o.gradient_accumulation_steps, 4);
    EXPECT_EQ(o.max_grad_norm, 0.5);
    EXPECT_EQ(o.seed, 1234u);
    EXPECT_EQ(o.threads, 6);
    EXPECT_TRUE(o.gradient_checkpointing);
    EXPECT_EQ(o.logging_steps, 3);
    EXPECT_EQ(o.eval_steps, 50);
    EXPECT_EQ(o.save_steps, 0);
    EXPECT_EQ(o.data.max_length, 2048);  // through TRL's older name max_seq_length
    EXPECT_TRUE(o.packing);
    EXPECT_FALSE(o.data.assistant_only_loss);
    EXPECT_FALSE(o.data.completion_only_loss);
    EXPECT_EQ(o.l1_lambda, 1e-4);
    EXPECT_EQ(o.sparsity_threshold, 1e-6);
    EXPECT_NO_THROW(validate(o));
}

TEST(Recipe, PreferenceKeys) {
    const TrainOptions dpo = from_recipe(Method::dpo, R"(
beta: 0.01
loss_type: robust
label_smoothing: 0.2
simpo_gamma: 1.5
max_length: 1024
max_prompt_length: 512
lora_target_modules: [gate_proj, up_proj, down_proj]
)");
    EXPECT_EQ(dpo.preference.beta, 0.01);
    EXPECT_EQ(dpo.preference.loss, PreferenceLoss::robust);
    EXPECT_EQ(dpo.preference.label_smoothing, 0.2);
    EXPECT_EQ(dpo.preference.simpo_gamma, 1.5);
    EXPECT_EQ(dpo.data.max_length, 1024);
    EXPECT_EQ(dpo.data.max_prompt_length, 512);
    EXPECT_EQ(dpo.lora.targets, targets({TARGET_GATE, TARGET_UP, TARGET_DOWN}));

    const TrainOptions orpo = from_recipe(Method::orpo, "method: orpo\nbeta: 0.05\nloss_type: orpo\norpo_nll: completion\n"
                                                         "lr_scheduler_type: inverse_sqrt\nwarmup_steps: 100\n");
    EXPECT_EQ(orpo.preference.beta, 0.05);
    EXPECT_EQ(orpo.preference.loss, PreferenceLoss::orpo);
    EXPECT_FALSE(orpo.preference.orpo_prompt_nll);
    EXPECT_EQ(orpo.lr_scheduler_type, ScheduleType::inverse_sqrt);
    EXPECT_EQ(orpo.warmup_steps, 100);
}

TEST(Recipe, ListsStringsAndNulls) {
    // A comma string, "all-linear", optimizer aliases, YAML nulls where a key has a "none" value.
    TrainOptions o = from_recipe(Method::sft, "lora_target_modules: k_proj, o_proj\noptim: adamw_torch_fused\n"
                                              "max_steps: null\nmax_length: ~\neval_data:\nchat_template: null\n");
    EXPECT_EQ(o.lora.targets, targets({TARGET_K, TARGET_O}));
    EXPECT_EQ(o.optimizer.name, "adamw");
    EXPECT_EQ(o.max_steps, -1);
    EXPECT_EQ(o.data.max_length, 0);
    EXPECT_EQ(o.eval_data, "");
    EXPECT_EQ(o.chat_template, "");
    o = from_recipe(Method::sft, "lora_target_modules: q_proj\n");
    o = from_recipe(Method::sft, "lora_target_modules: all-linear\nlearning_rate: '3e-5'\nseed: +7\n");
    EXPECT_EQ(o.lora.targets, kAllTargets);
    EXPECT_EQ(o.learning_rate, 3e-5);
    EXPECT_EQ(o.seed, 7u);
    // An empty recipe, or one of comments only, changes nothing.
    o = from_recipe(Method::dpo, "# nothing yet\n");
    expect_same(o, TrainOptions::defaults(Method::dpo));
}

// ---- Errors ---------------------------------------------------------------------------------------

TEST(RecipeErrors, BadValuesNameFileLineAndKey) {
    const std::string path = write_recipe("model_name_or_path: m\n\n# speed\nlearning_rate: fast\n");
    TrainOptions      o    = TrainOptions::defaults(Method::sft);
    expect_input_error([&] { apply_recipe(path, o); }, {path + ":4: learning_rate: expected a number, got 'fast'"});

    struct Case {
        std::string yaml, message;
    };
    const std::vector<Case> cases = {
        {"lora_r: 8.5\n", ":1: lora_r: expected an integer, got '8.5'"},
        {"\nseed: -3\n", ":2: seed: expected a non-negative integer, got '-3'"},
        {"packing: maybe\n", ":1: packing: expected true or false, got 'maybe'"},
        {"lr_scheduler_type: cosine_with_restarts\n", ":1: lr_scheduler_type: unknown schedule 'cosine_with_restarts'"},
        {"optim: adamw_bnb_8bit\n", ":1: optim: expected one of adamw_torch, adamw, adamw_torch_fused, paged_adamw_32bit, sgd"},
        {"chat_template: \"{% for m in messages %}{{ m.content }}{% endfor %}\"\n",
         ":1: chat_template: this is a template's text; give a built-in name"},
        {"lora_target_modules: [q_proj, mlp]\n", ":1: lora_target_modules: unknown LoRA target module 'mlp'"},
        {"lora_target_modules: []\n", ":1: lora_target_modules: give at least one module"},
        {"learning_rate: [1, 2]\n", ":1: learning_rate: expected a single value, got a list"},
        {"learning_rate:\n  a: 1\n", ":1: learning_rate: expected a value, got a mapping"},
        {"lora_r:\n", ":1: lora_r: expected a value, got null"},
        {"learning_rate: .inf\n", ":1: learning_rate: expected a finite number, got '.inf'"},
        {"learning_rate: nan\n", ":1: learning_rate: expected a finite number"},
        {"threads: 99999999999\n", ":1: threads: integer out of range"},
        {"seed: 1\nlora_r: 4\nseed: 2\n", ":3: seed: given twice (first on line 1)"},
        {"method: dpo\n", ":1: method: this recipe is for dpo, but the run is sft"},
        {"beta: 0.1\n", ":1: beta: applies to dpo and orpo, not sft"},
        {"sft:\n  beta: 1\n", ":1: sft: sections belong to paft parallel's recipes"},
        {"- a\n- b\n", ":1: a recipe is a mapping of keys to values"},
    };
    for (const Case & c : cases) {
        const std::string p = write_recipe(c.yaml);
        TrainOptions      t = TrainOptions::defaults(Method::sft);
        expect_input_error([&] { apply_recipe(p, t); }, {p + c.message});
    }
    // A key of another preference method.
    const std::string p = write_recipe("loss_type: sigmoid\n");
    TrainOptions      t = TrainOptions::defaults(Method::orpo);
    expect_input_error([&] { apply_recipe(p, t); }, {p + ":1: loss_type: orpo takes only loss_type orpo, got 'sigmoid'"});
    const std::string q = write_recipe("\n\nsimpo_gamma: 1\n");
    expect_input_error([&] { apply_recipe(q, t); }, {q + ":3: simpo_gamma: applies to dpo, not orpo"});
}

TEST(RecipeErrors, UnknownKeysSuggestTheClosest) {
    struct Case {
        std::string yaml, message;
    };
    const std::vector<Case> cases = {
        {"learning_rat: 1\n", ":1: unknown key 'learning_rat' (did you mean 'learning_rate'?)"},
        {"seed: 1\nlora_rank: 8\n", ":2: unknown key 'lora_rank' (did you mean 'lora_r'?)"},
        {"epochs: 3\n", ":1: unknown key 'epochs' (did you mean 'num_train_epochs'?)"},
        {"max_seq_len: 3\n", ":1: unknown key 'max_seq_len' (did you mean 'max_seq_length'?)"},
    };
    for (const Case & c : cases) {
        const std::string p = write_recipe(c.yaml);
        TrainOptions      t = TrainOptions::defaults(Method::sft);
        expect_input_error([&] { apply_recipe(p, t); }, {p + c.message});
    }
    const std::string p = write_recipe("zzzz_qqq: 1\n");
    TrainOptions      t = TrainOptions::defaults(Method::sft);
    try {
        apply_recipe(p, t);
        ADD_FAILURE() << "no error";
    } catch (const InputError & e) {
        EXPECT_EQ(std::string(e.what()), p + ":1: unknown key 'zzzz_qqq'");
    }
}

TEST(RecipeErrors, BadYamlAndMissingFile) {
    const std::string p = write_recipe("learning_rate: 1\nlora_target_modules: [q_proj, v_proj\nseed: 3\n");
    TrainOptions      t = TrainOptions::defaults(Method::sft);
    expect_input_error([&] { apply_recipe(p, t); }, {p + ":", "not valid YAML"});
    const std::string q = write_recipe("a: b: c\n");
    expect_input_error([&] { apply_recipe(q, t); }, {q + ":1:", "not valid YAML"});
    expect_input_error([&] { apply_recipe("/nonexistent/recipe.yaml", t); }, {"/nonexistent/recipe.yaml", "cannot read"});
}

TEST(Recipe, IgnoredHandbookKeysWarn) {
    const std::string p = write_recipe(R"(bf16: true
torch_dtype: bfloat16
learning_rate: 2.0e-04
dataset_mixer:
  HuggingFaceH4/ultrachat_200k: 1.0
gradient_checkpointing_kwargs:
  use_reentrant: false
report_to:
- tensorboard
)");
    TrainOptions o = TrainOptions::defaults(Method::sft);
    testing::internal::CaptureStderr();
    apply_recipe(p, o);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(o.learning_rate, 2e-4);
    // torch_dtype is a loading key now (the type the frozen weights are kept in), not ignored.
    EXPECT_EQ(o.torch_dtype, "bfloat16");
    EXPECT_EQ(err.find("torch_dtype"), std::string::npos) << err;
    for (const char * part : {"warning", "ignoring", "bf16 (line 1)", "dataset_mixer (line 4)",
                              "gradient_checkpointing_kwargs (line 6)", "report_to (line 8)"}) {
        EXPECT_NE(err.find(part), std::string::npos) << part << " in: " << err;
    }
    EXPECT_NE(err.find(p), std::string::npos) << err;
    // Without ignored keys, nothing is written.
    testing::internal::CaptureStderr();
    apply_recipe(write_recipe("seed: 1\n", "quiet.yaml"), o);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

// The handbook's zephyr-7b-beta QLoRA recipes as published (config_qlora.yaml; the SFT one without
// its inline chat template): every key is either used or ignored with a warning.
TEST(Recipe, HandbookRecipesLoad) {
    const std::string sft_yaml = R"(# Model arguments
model_name_or_path: mistralai/Mistral-7B-v0.1
model_revision: main
torch_dtype: bfloat16
attn_implementation: flash_attention_2

# LoRA arguments
load_in_4bit: true
use_peft: true
lora_r: 16
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules:
- q_proj
- k_proj
- v_proj
- o_proj
- gate_proj
- up_proj
- down_proj

# Data training arguments
dataset_mixer:
  HuggingFaceH4/ultrachat_200k: 1.0
dataset_splits:
- train_sft
- test_sft
preprocessing_num_workers: 12

# SFT trainer config
bf16: true
do_eval: true
evaluation_strategy: epoch
gradient_accumulation_steps: 2
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: false
hub_model_id: zephyr-7b-sft-qlora
hub_strategy: every_save
learning_rate: 2.0e-04
log_level: info
logging_steps: 5
logging_strategy: steps
lr_scheduler_type: cosine
max_seq_length: 2048
max_steps: -1
num_train_epochs: 1
output_dir: data/zephyr-7b-sft-qlora
overwrite_output_dir: true
per_device_eval_batch_size: 8
per_device_train_batch_size: 4
push_to_hub: true
report_to:
- tensorboard
save_strategy: "steps"
save_steps: 100
save_total_limit: 1
seed: 42
warmup_ratio: 0.1
)";
    testing::internal::CaptureStderr();
    const TrainOptions sft = from_recipe(Method::sft, sft_yaml);
    std::string        err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("model_revision (line 3)"), std::string::npos) << err;
    EXPECT_NE(err.find("save_total_limit (line 57)"), std::string::npos) << err;
    EXPECT_EQ(sft.model, "mistralai/Mistral-7B-v0.1");
    EXPECT_EQ(sft.lora.r, 16);
    EXPECT_EQ(sft.lora.alpha, 16.0f);
    EXPECT_EQ(sft.learning_rate, 2e-4);
    EXPECT_EQ(sft.data.max_length, 2048);
    EXPECT_EQ(sft.save_steps, 100);
    EXPECT_EQ(sft.output_dir, "data/zephyr-7b-sft-qlora");

    const std::string dpo_yaml = R"(model_name_or_path: alignment-handbook/zephyr-7b-sft-qlora
torch_dtype: bfloat16
attn_implementation: flash_attention_2
use_peft: true
load_in_4bit: true
lora_r: 128
lora_alpha: 128
lora_dropout: 0.05
lora_target_modules:
- q_proj
- k_proj
- v_proj
- o_proj
- gate_proj
- up_proj
- down_proj
dataset_mixer:
  HuggingFaceH4/ultrafeedback_binarized: 1.0
dataset_splits:
- train_prefs
- test_prefs
preprocessing_num_workers: 12
bf16: true
beta: 0.01
do_eval: true
evaluation_strategy: steps
eval_steps: 100
gradient_accumulation_steps: 4
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: false
hub_model_id: zephyr-7b-dpo-qlora
learning_rate: 5.0e-6
log_level: info
logging_steps: 10
lr_scheduler_type: cosine
max_length: 1024
max_prompt_length: 512
num_train_epochs: 1
optim: paged_adamw_32bit
output_dir: data/zephyr-7b-dpo-qlora
per_device_train_batch_size: 4
per_device_eval_batch_size: 8
push_to_hub: true
save_strategy: "steps"
save_steps: 100
save_total_limit: 1
seed: 42
warmup_ratio: 0.1
)";
    testing::internal::CaptureStderr();
    const TrainOptions dpo = from_recipe(Method::dpo, dpo_yaml);
    err                    = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("dataset_mixer (line 17)"), std::string::npos) << err;
    EXPECT_EQ(dpo.lora.r, 128);
    EXPECT_EQ(dpo.preference.beta, 0.01);
    EXPECT_EQ(dpo.learning_rate, 5e-6);
    EXPECT_EQ(dpo.optimizer.name, "adamw");
    EXPECT_EQ(dpo.eval_steps, 100);
    EXPECT_EQ(dpo.data.max_prompt_length, 512);
}

// ---- Flags ----------------------------------------------------------------------------------------

TEST(Flags, OverrideRecipeOverrideDefaults) {
    const std::string path = write_recipe(R"(model_name_or_path: from-recipe
train_data: recipe.jsonl
output_dir: out/recipe
learning_rate: 5.0e-6
beta: 0.01
per_device_train_batch_size: 4
lora_r: 128
lora_alpha: 128
max_prompt_length: 512
)");
    const TrainOptions o = from_args(Method::dpo, {"--config", path, "--model", "from-flag", "--learning-rate", "1e-5",
                                                   "--lora-alpha=64", "--grad-accum", "8", "--loss-type", "ipo",
                                                   "--epochs", "2", "--resume"});
    EXPECT_EQ(o.model, "from-flag");                // flag over recipe
    EXPECT_EQ(o.learning_rate, 1e-5);               // flag over recipe
    EXPECT_EQ(o.lora.alpha, 64.0f);                 // flag over recipe
    EXPECT_EQ(o.train_data, "recipe.jsonl");        // recipe only
    EXPECT_EQ(o.preference.beta, 0.01);             // recipe over default
    EXPECT_EQ(o.per_device_train_batch_size, 4);    // recipe over default
    EXPECT_EQ(o.lora.r, 128);
    EXPECT_EQ(o.data.max_prompt_length, 512);
    EXPECT_EQ(o.gradient_accumulation_steps, 8);    // flag over default
    EXPECT_EQ(o.preference.loss, PreferenceLoss::ipo);
    EXPECT_EQ(o.num_train_epochs, 2.0);
    EXPECT_TRUE(o.resume);
    EXPECT_EQ(o.lora.dropout, 0.05f);               // default
    EXPECT_EQ(o.optimizer.name, "adamw");           // default
}

TEST(Flags, ShortAndLongNamesAndBooleans) {
    const TrainOptions o = from_args(
        Method::sft, {"--model", "m", "--data", "d.jsonl", "--out", "o", "--eval-data", "e.jsonl", "--init-adapter", "a",
                      "--batch-size", "2", "--per-device-eval-batch-size", "3", "--threads", "4", "--seed", "9",
                      "--l1-lambda", "0.001", "--lora-target-modules", "q_proj,v_proj", "--packing",
                      "--no-assistant-only-loss", "--completion-only-loss=false", "--gradient-checkpointing=true",
                      "--max-length", "256", "--lr-scheduler-type", "constant", "--tokenizer", "tok"});
    EXPECT_EQ(o.model, "m");
    EXPECT_EQ(o.train_data, "d.jsonl");
    EXPECT_EQ(o.output_dir, "o");
    EXPECT_EQ(o.eval_data, "e.jsonl");
    EXPECT_EQ(o.init_adapter, "a");
    EXPECT_EQ(o.tokenizer, "tok");
    EXPECT_EQ(o.per_device_train_batch_size, 2);
    EXPECT_EQ(o.per_device_eval_batch_size, 3);
    EXPECT_EQ(o.threads, 4);
    EXPECT_EQ(o.seed, 9u);
    EXPECT_EQ(o.l1_lambda, 0.001);
    EXPECT_EQ(o.lora.targets, targets({TARGET_Q, TARGET_V}));
    EXPECT_TRUE(o.packing);
    EXPECT_FALSE(o.data.assistant_only_loss);
    EXPECT_FALSE(o.data.completion_only_loss);
    EXPECT_TRUE(o.gradient_checkpointing);
    EXPECT_EQ(o.data.max_length, 256);
    EXPECT_EQ(o.lr_scheduler_type, ScheduleType::constant);
    // The long names of the short flags work too.
    const TrainOptions p = from_args(Method::sft, {"--model-name-or-path", "m2", "--train-data", "t", "--output-dir", "x",
                                                   "--num-train-epochs", "1.5", "--gradient-accumulation-steps", "3"});
    EXPECT_EQ(p.model, "m2");
    EXPECT_EQ(p.train_data, "t");
    EXPECT_EQ(p.output_dir, "x");
    EXPECT_EQ(p.num_train_epochs, 1.5);
    EXPECT_EQ(p.gradient_accumulation_steps, 3);
}

TEST(Flags, ErrorsNameTheFlag) {
    const std::vector<std::string> base = {"--model", "m", "--data", "d", "--out", "o"};
    auto with = [&](std::initializer_list<std::string> extra) {
        std::vector<std::string> args = base;
        args.insert(args.end(), extra);
        return args;
    };
    expect_input_error([&] { from_args(Method::sft, with({"--learning-rate", "fast"})); },
                       {"--learning-rate: expected a number, got 'fast'"});
    expect_input_error([&] { from_args(Method::sft, with({"--batch-size", "two"})); },
                       {"--batch-size: expected an integer, got 'two'"});
    expect_input_error([&] { from_args(Method::sft, with({"--packing=maybe"})); },
                       {"--packing: expected true or false, got 'maybe'"});
    expect_input_error([&] { from_args(Method::sft, with({"--beta", "0.1"})); },
                       {"--beta: applies to dpo and orpo, not sft"});
    expect_input_error([&] { from_args(Method::dpo, with({"--loss-type", "orpo"})); },
                       {"--loss-type: expected one of sigmoid, ipo, hinge, robust, simpo, got 'orpo'"});
    expect_input_error([&] { from_args(Method::sft, with({"--batch-size", "0"})); },
                       {"per_device_train_batch_size (--batch-size) must be at least 1, got 0"});
    // CLI11's own errors: an unknown flag, a flag given twice.
    EXPECT_THROW(from_args(Method::sft, with({"--learning-rat", "1"})), CLI::ParseError);
    EXPECT_THROW(from_args(Method::sft, with({"--seed", "1", "--seed", "2"})), CLI::ParseError);
    // A missing required option names both of its names.
    expect_input_error([] { from_args(Method::sft, {"--model", "m", "--out", "o"}); }, {"train_data (--data) is required"});
}

// ---- Round trip ------------------------------------------------------------------------------------

TEST(RoundTrip, RecipeYamlReadsBackToTheSameOptions) {
    std::vector<TrainOptions> runs;
    runs.push_back(from_recipe(Method::sft, kSftRecipe));
    runs.push_back(TrainOptions::defaults(Method::sft));
    runs.push_back(from_recipe(Method::dpo, "beta: 0.0123456789\nloss_type: simpo\nlabel_smoothing: 0.1\n"
                                            "simpo_gamma: -0.25\nmax_prompt_length: 100\nlearning_rate: 3.3e-7\n"
                                            "model_name_or_path: 'null'\noutput_dir: \"a: b # c\"\n"
                                            "chat_template: \"x: y.jinja\"\ntrain_data: '- x'\n"));
    runs.push_back(from_recipe(Method::orpo, "orpo_nll: completion\nbeta: 0.05\nlora_alpha: 0.1\nlora_dropout: 0.3\n"
                                             "lora_target_modules: down_proj\nmax_steps: 12\nnum_train_epochs: 0.1\n"
                                             "warmup_ratio: 0.30000000000000004\nseed: 18446744073709551615\n"));
    for (const TrainOptions & o : runs) {
        const std::string yaml = recipe_yaml(o);
        TrainOptions      back = TrainOptions::defaults(o.method);
        const std::string path = write_recipe(yaml, std::string("back-") + method_name(o.method) + ".yaml");
        apply_recipe(path, back);
        SCOPED_TRACE(yaml);
        expect_same(back, o);
        EXPECT_EQ(recipe_yaml(back), yaml);
    }
}

TEST(RoundTrip, RecipeYamlHasEveryKeyOfTheMethod) {
    const std::string sft = recipe_yaml(TrainOptions::defaults(Method::sft));
    for (const char * key : {"model_name_or_path:", "lora_target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                                    "up_proj, down_proj]",
                             "learning_rate: 2.0e-05", "optim: adamw_torch", "packing: false", "l1_lambda: 0",
                             "method: sft", "max_length: 1024", "num_train_epochs: 3"}) {
        EXPECT_NE(sft.find(key), std::string::npos) << key << " in:\n" << sft;
    }
    EXPECT_EQ(sft.find("beta:"), std::string::npos) << sft;
    const std::string dpo = recipe_yaml(TrainOptions::defaults(Method::dpo));
    for (const char * key : {"beta: 0.1", "loss_type: sigmoid", "label_smoothing: 0", "learning_rate: 1.0e-06"}) {
        EXPECT_NE(dpo.find(key), std::string::npos) << key << " in:\n" << dpo;
    }
    EXPECT_EQ(dpo.find("packing:"), std::string::npos) << dpo;
    EXPECT_EQ(dpo.find("orpo_nll:"), std::string::npos) << dpo;
    // Every key of the table appears in one of the three methods' recipes.
    const std::string orpo = recipe_yaml(TrainOptions::defaults(Method::orpo));
    for (const std::string & key : recipe_keys()) {
        const std::string line = "\n" + key + ":";
        EXPECT_TRUE(sft.find(line) != std::string::npos || dpo.find(line) != std::string::npos ||
                    orpo.find(line) != std::string::npos)
            << key;
    }
}

// ---- validate() ----------------------------------------------------------------------------------

TEST(Validate, ErrorsNameTheOption) {
    TrainOptions ok = TrainOptions::defaults(Method::dpo);
    ok.model = "m", ok.train_data = "d", ok.output_dir = "o";
    EXPECT_NO_THROW(validate(ok));
    struct Case {
        std::function<void(TrainOptions &)> change;
        std::string                         message;
    };
    const std::vector<Case> cases = {
        {[](TrainOptions & o) { o.model.clear(); }, "model_name_or_path (--model) is required"},
        {[](TrainOptions & o) { o.output_dir.clear(); }, "output_dir (--out) is required"},
        {[](TrainOptions & o) { o.per_device_train_batch_size = 0; }, "per_device_train_batch_size (--batch-size)"},
        {[](TrainOptions & o) { o.per_device_eval_batch_size = 0; }, "per_device_eval_batch_size"},
        {[](TrainOptions & o) { o.gradient_accumulation_steps = 0; }, "gradient_accumulation_steps (--grad-accum)"},
        {[](TrainOptions & o) { o.learning_rate = -1e-5; }, "learning_rate (--learning-rate) must be at least 0"},
        {[](TrainOptions & o) { o.num_train_epochs = 0; }, "num_train_epochs (--epochs) must be positive"},
        {[](TrainOptions & o) { o.max_steps = 0; }, "max_steps (--max-steps)"},
        {[](TrainOptions & o) { o.preference.beta = 0; }, "beta (--beta) must be positive, got 0"},
        {[](TrainOptions & o) { o.preference.label_smoothing = 0.5; }, "label_smoothing (--label-smoothing)"},
        {[](TrainOptions & o) { o.preference.label_smoothing = -0.1; }, "label_smoothing"},
        {[](TrainOptions & o) { o.lora.r = 0; }, "lora_r (--lora-r) must be at least 1, got 0"},
        {[](TrainOptions & o) { o.lora.dropout = 1.0f; }, "lora_dropout (--lora-dropout) must be in [0, 1)"},
        {[](TrainOptions & o) { o.lora.targets = {}; }, "lora_target_modules (--lora-target-modules) names no module"},
        {[](TrainOptions & o) { o.threads = -1; }, "threads (--threads) must be at least 0"},
        {[](TrainOptions & o) { o.warmup_ratio = 1.5; }, "warmup_ratio (--warmup-ratio) must be in [0, 1]"},
        {[](TrainOptions & o) { o.warmup_steps = -1; }, "warmup_steps"},
        {[](TrainOptions & o) { o.max_grad_norm = -1; }, "max_grad_norm"},
        {[](TrainOptions & o) { o.optimizer.beta1 = 1; }, "adam_beta1 (--adam-beta1)"},
        {[](TrainOptions & o) { o.optimizer.weight_decay = -1; }, "weight_decay"},
        {[](TrainOptions & o) { o.optimizer.name = "lion"; }, "optim (--optim): unknown optimizer 'lion'"},
        {[](TrainOptions & o) { o.data.max_length = -1; }, "max_length (--max-length)"},
        {[](TrainOptions & o) { o.data.max_prompt_length = 1024; },
         "max_prompt_length (--max-prompt-length) (1024) must be less than max_length (--max-length) (1024)"},
        {[](TrainOptions & o) { o.packing = true; }, "packing (--packing) is for sft"},
        {[](TrainOptions & o) { o.preference.loss = PreferenceLoss::orpo; },
         "loss_type (--loss-type) must be one of sigmoid, ipo, hinge, robust, simpo for dpo"},
        {[](TrainOptions & o) { o.l1_lambda = -1; }, "l1_lambda (--l1-lambda) must be at least 0"},
        {[](TrainOptions & o) { o.logging_steps = -1; }, "logging_steps"},
    };
    for (const Case & c : cases) {
        TrainOptions o = ok;
        c.change(o);
        expect_input_error([&] { validate(o); }, {c.message});
    }
    // Epochs may be 0 when max_steps gives the length.
    TrainOptions steps = ok;
    steps.num_train_epochs = 0;
    steps.max_steps        = 10;
    EXPECT_NO_THROW(validate(steps));
    // ORPO accepts only its own loss; SFT packing needs a row length.
    TrainOptions orpo = TrainOptions::defaults(Method::orpo);
    orpo.model = "m", orpo.train_data = "d", orpo.output_dir = "o";
    EXPECT_NO_THROW(validate(orpo));
    orpo.preference.loss = PreferenceLoss::sigmoid;
    expect_input_error([&] { validate(orpo); }, {"loss_type (--loss-type) must be orpo for orpo"});
    TrainOptions sft = TrainOptions::defaults(Method::sft);
    sft.model = "m", sft.train_data = "d", sft.output_dir = "o", sft.packing = true, sft.data.max_length = 0;
    expect_input_error([&] { validate(sft); }, {"max_length (--max-length) must be positive with packing"});
}

// ---- Parallel -------------------------------------------------------------------------------------

const char * kParallelRecipe = R"(output_dir: runs/p
threads: 8
model_name_or_path: base
seed: 7
lora_r: 4
learning_rate: 1.0e-3
beta: 0.2
l1_lambda: 0.01
bf16: true

sft:
  train_data: sft.jsonl
  learning_rate: 2.0e-4
  threads: 5
  packing: true

preference:
  method: orpo
  train_data: pref.jsonl
  lora_r: 8
  threads: 3
  output_dir: elsewhere/pref

merge:
  method: dare_ties
  weights: [0.7, 0.3]
  densities: [0.5, 1]
  normalize: false
  lambda: 1.5
  seed: 11
)";

TEST(Parallel, SectionsOverrideSharedKeys) {
    const std::string path = write_recipe(kParallelRecipe);
    testing::internal::CaptureStderr();
    const ParallelOptions p = parallel_from_args({"--config", path});
    EXPECT_NE(testing::internal::GetCapturedStderr().find("bf16 (line 9)"), std::string::npos);
    EXPECT_EQ(p.output_dir, "runs/p");
    EXPECT_EQ(p.threads, 8);
    EXPECT_EQ(p.sft_threads, 5);
    EXPECT_EQ(p.preference_threads, 3);
    EXPECT_EQ(p.sft.threads, 5);
    EXPECT_EQ(p.preference.threads, 3);
    // Shared keys reach both branches...
    EXPECT_EQ(p.sft.model, "base");
    EXPECT_EQ(p.preference.model, "base");
    EXPECT_EQ(p.sft.seed, 7u);
    EXPECT_EQ(p.preference.seed, 7u);
    EXPECT_EQ(p.sft.lora.r, 4);
    EXPECT_EQ(p.preference.lora.r, 8);  // ... unless the section overrides them
    EXPECT_EQ(p.sft.learning_rate, 2e-4);
    EXPECT_EQ(p.preference.learning_rate, 1e-3);
    // ... and a key of one method reaches that branch only.
    EXPECT_EQ(p.sft.l1_lambda, 0.01);
    EXPECT_EQ(p.preference.l1_lambda, 0.0);
    EXPECT_EQ(p.preference.preference.beta, 0.2);
    EXPECT_TRUE(p.sft.packing);
    // The preference method picks its defaults.
    EXPECT_EQ(p.sft.method, Method::sft);
    EXPECT_EQ(p.preference.method, Method::orpo);
    EXPECT_EQ(p.preference.preference.loss, PreferenceLoss::orpo);
    EXPECT_EQ(p.sft.train_data, "sft.jsonl");
    EXPECT_EQ(p.preference.train_data, "pref.jsonl");
    EXPECT_EQ(p.sft.output_dir, (fs::path("runs/p") / "sft").string());
    EXPECT_EQ(p.preference.output_dir, "elsewhere/pref");
    EXPECT_TRUE(p.merge_enabled);
    EXPECT_EQ(p.merge.method, "dare_ties");
    EXPECT_EQ(p.merge.weights, (std::vector<double>{0.7, 0.3}));
    EXPECT_EQ(p.merge.densities, (std::vector<double>{0.5, 1.0}));
    EXPECT_EQ(p.merge.normalize, 0);
    EXPECT_EQ(p.merge.lambda, 1.5);
    EXPECT_EQ(p.merge.seed, 11u);
}

TEST(Parallel, FlagsOverrideTheRecipe) {
    const std::string path = write_recipe(kParallelRecipe);
    testing::internal::CaptureStderr();  // bf16 is ignored
    const ParallelOptions p = parallel_from_args(
        {"--config", path, "--pref-method", "dpo", "--model", "other", "--sft-data", "s2.jsonl", "--pref-data", "p2.jsonl",
            "--out", "runs/q", "--threads", "16", "--sft-threads", "10", "--pref-threads", "6", "--l1-lambda", "0.5",
            "--beta", "0.05", "--no-merge", "--merge-method", "dare_linear", "--merge-weights", "1,2", "--resume", "--set",
            "sft.learning_rate=3e-4", "--set", "preference.loss_type=ipo", "--set", "lora_dropout=0.2", "--seed", "5"});
    testing::internal::GetCapturedStderr();
    EXPECT_EQ(p.preference.method, Method::dpo);  // the flag's method, over the recipe's orpo
    EXPECT_EQ(p.preference.preference.loss, PreferenceLoss::ipo);
    EXPECT_EQ(p.preference.learning_rate, 1e-3);  // the recipe's shared key, over dpo's default
    EXPECT_EQ(p.sft.model, "other");
    EXPECT_EQ(p.preference.model, "other");
    EXPECT_EQ(p.sft.train_data, "s2.jsonl");
    EXPECT_EQ(p.preference.train_data, "p2.jsonl");
    EXPECT_EQ(p.output_dir, "runs/q");
    EXPECT_EQ(p.sft.output_dir, (fs::path("runs/q") / "sft").string());
    EXPECT_EQ(p.preference.output_dir, "elsewhere/pref");  // the recipe's section still says so
    EXPECT_EQ(p.threads, 16);
    EXPECT_EQ(p.sft_threads, 10);
    EXPECT_EQ(p.preference_threads, 6);
    EXPECT_EQ(p.sft.l1_lambda, 0.5);
    EXPECT_EQ(p.preference.preference.beta, 0.05);
    EXPECT_FALSE(p.merge_enabled);
    EXPECT_EQ(p.merge.method, "dare_linear");
    EXPECT_EQ(p.merge.weights, (std::vector<double>{1.0, 2.0}));
    EXPECT_EQ(p.merge.densities, (std::vector<double>{0.5, 1.0}));
    EXPECT_TRUE(p.sft.resume);
    EXPECT_TRUE(p.preference.resume);
    EXPECT_EQ(p.sft.learning_rate, 3e-4);
    EXPECT_EQ(p.sft.lora.dropout, 0.2f);
    EXPECT_EQ(p.preference.lora.dropout, 0.2f);
    EXPECT_EQ(p.sft.seed, 5u);
    EXPECT_EQ(p.preference.seed, 5u);
}

TEST(Parallel, FlagsAloneAndDefaults) {
    const ParallelOptions p =
        parallel_from_args({"--model", "m", "--sft-data", "s", "--pref-data", "p", "--out", "runs/x"});
    EXPECT_EQ(p.preference.method, Method::dpo);
    EXPECT_EQ(p.sft.learning_rate, 2e-5);
    EXPECT_EQ(p.preference.learning_rate, 1e-6);
    EXPECT_EQ(p.merge.method, "ties");
    EXPECT_TRUE(p.merge.weights.empty());
    EXPECT_EQ(p.merge.normalize, -1);
    EXPECT_TRUE(p.merge_enabled);
    EXPECT_EQ(p.preference.output_dir, (fs::path("runs/x") / "preference").string());
}

TEST(Parallel, Errors) {
    auto recipe_error = [](const std::string & yaml, const std::string & message) {
        const std::string path = write_recipe(yaml);
        expect_input_error([&] { parallel_from_args({"--config", path, "--model", "m", "--sft-data", "s",
                                                     "--pref-data", "p", "--out", "o"}); },
                           {path + message});
    };
    recipe_error("method: dpo\n", ":1: method: the preference branch's method (dpo or orpo) goes in the preference:");
    recipe_error("preference:\n  method: sft\n", ":2: preference.method: expected dpo or orpo, got 'sft'");
    recipe_error("sft:\n  method: dpo\n", ":2: sft.method: the sft branch's method is sft");
    recipe_error("sft:\n  beta: 0.1\n", ":2: sft.beta: applies to dpo and orpo, not sft");
    recipe_error("sft:\n  lerning_rate: 1\n", ":2: unknown key 'lerning_rate' in sft: (did you mean 'learning_rate'?)");
    recipe_error("merge:\n  weight: [1, 2]\n", ":2: unknown key 'weight' in merge: (did you mean 'weights'?)");
    recipe_error("merge:\n  weights: [1, 2, 3]\n", ":2: merge.weights: expected 2 values (sft, preference), got 3");
    recipe_error("merge:\n  densities: [0, 1]\n", ":2: merge.densities: a density must be in (0, 1]");
    recipe_error("merge:\n  method: slerpp\n", ":2: merge.method: expected one of linear, task_arithmetic, ties, dare_ties");
    // Settings the merge method does not take, or lacks, are found by the merge's own checks.
    for (const auto & [yaml, message] : {std::pair{"merge:\n  method: slerp\n", "merge: t for tensor '(any tensor)': slerp needs"},
                                         {"merge:\n  method: linear\n  lambda: 2\n", "merge: merge.lambda: linear takes no parameter 'lambda'"}}) {
        const std::string path = write_recipe(yaml);
        expect_input_error([&] { parallel_from_args({"--config", path, "--model", "m", "--sft-data", "s", "--pref-data",
                                                     "p", "--out", "o"}); },
                           {message});
    }
    recipe_error("merge:\n  normalize: sometimes\n", ":2: merge.normalize: expected true or false, got 'sometimes'");
    recipe_error("sft: 3\n", ":1: sft: expected a section of keys");
    recipe_error("preferences:\n  beta: 1\n", ":1: unknown key 'preferences' (did you mean 'preference'?)");
    recipe_error("preference:\n  method: dpo\n\norpo_nll: prompt\n", ":4: orpo_nll: applies to orpo, not dpo");

    auto flag_error = [](std::vector<std::string> extra, const std::string & message) {
        std::vector<std::string> args = {"--model", "m", "--sft-data", "s", "--pref-data", "p", "--out", "o"};
        args.insert(args.end(), extra.begin(), extra.end());
        expect_input_error([&] { parallel_from_args(args); }, {message});
    };
    flag_error({"--pref-method", "kto"}, "--pref-method: expected dpo or orpo, got 'kto'");
    flag_error({"--beta", "x"}, "--beta: expected a number, got 'x'");
    flag_error({"--set", "lerning_rate=1"}, "--set lerning_rate: unknown key 'lerning_rate' (did you mean 'learning_rate'?)");
    flag_error({"--set", "nothing"}, "--set 'nothing': expected PATH=VALUE");
    flag_error({"--merge-densities", "2,1"}, "--merge-densities: a density must be in (0, 1]");
    flag_error({"--threads", "4", "--sft-threads", "3", "--pref-threads", "2"},
               "the branches' threads (sft 3 + preference 2) exceed threads (4)");
    flag_error({"--set", "sft.lora_r=0"}, "sft branch: lora_r (--lora-r) must be at least 1, got 0");
    expect_input_error([] { parallel_from_args({"--model", "m", "--sft-data", "s", "--pref-data", "p"}); },
                       {"output_dir (--out) is required"});
    expect_input_error([] { parallel_from_args({"--model", "m", "--sft-data", "s", "--out", "o"}); },
                       {"preference branch: train_data (--data) is required"});
}

TEST(Parallel, BranchRanksFromTheFlagOrTheRecipe) {
    const std::string path = write_recipe(kParallelRecipe);
    testing::internal::CaptureStderr();
    const ParallelOptions p = parallel_from_args({"--config", path, "--branch-ranks", "1:3"});
    const ParallelOptions d = parallel_from_args({"--config", path});
    testing::internal::GetCapturedStderr();
    EXPECT_EQ(p.sft_ranks, 1);
    EXPECT_EQ(p.preference_ranks, 3);
    EXPECT_EQ(d.sft_ranks, 0);  // half and half
    EXPECT_NE(recipe_yaml(p).find("\nbranch_ranks: \"1:3\""), std::string::npos) << recipe_yaml(p);
    EXPECT_NE(recipe_yaml(d).find("\nbranch_ranks: half"), std::string::npos) << recipe_yaml(d);
    const ParallelOptions back = parallel_from_args({"--config", write_recipe(recipe_yaml(p), "ranks.yaml")});
    EXPECT_EQ(back.sft_ranks, 1);
    EXPECT_EQ(back.preference_ranks, 3);
    for (const char * bad : {"3", "0:2", "a:b", "1:-1"}) {
        try {
            parallel_from_args({"--config", path, "--branch-ranks", bad});
            ADD_FAILURE() << bad << " was accepted";
        } catch (const InputError & e) {
            EXPECT_NE(std::string(e.what()).find("--branch-ranks"), std::string::npos) << e.what();
        }
    }
}

TEST(Parallel, RoundTrip) {
    const std::string path = write_recipe(kParallelRecipe);
    testing::internal::CaptureStderr();
    const ParallelOptions p = parallel_from_args({"--config", path, "--set", "preference.eval_data=ev.jsonl"});
    testing::internal::GetCapturedStderr();
    const std::string yaml = recipe_yaml(p);
    SCOPED_TRACE(yaml);
    const ParallelOptions back = parallel_from_args({"--config", write_recipe(yaml, "back.yaml")});
    expect_same(back.sft, p.sft);
    expect_same(back.preference, p.preference);
    EXPECT_EQ(back.output_dir, p.output_dir);
    EXPECT_EQ(back.threads, p.threads);
    EXPECT_EQ(back.sft_threads, p.sft_threads);
    EXPECT_EQ(back.preference_threads, p.preference_threads);
    EXPECT_EQ(back.sft_ranks, p.sft_ranks);
    EXPECT_EQ(back.merge_enabled, p.merge_enabled);
    EXPECT_EQ(back.merge.method, p.merge.method);
    EXPECT_EQ(back.merge.weights, p.merge.weights);
    EXPECT_EQ(back.merge.densities, p.merge.densities);
    EXPECT_EQ(back.merge.normalize, p.merge.normalize);
    EXPECT_EQ(back.merge.lambda, p.merge.lambda);
    EXPECT_EQ(back.merge.seed, p.merge.seed);
    EXPECT_EQ(recipe_yaml(back), yaml);
    // Keys both branches agree on are written once, at the top; the others in the sections.
    EXPECT_NE(yaml.find("\nmodel_name_or_path: base\n"), std::string::npos);
    EXPECT_NE(yaml.find("\n  learning_rate: 0.0002\n"), std::string::npos);
    EXPECT_NE(yaml.find("\n  method: orpo\n"), std::string::npos);
    EXPECT_NE(yaml.find("\n  weights: [0.7, 0.3]\n"), std::string::npos);

    // Defaults (no weights, the method's normalize) round trip too.
    const ParallelOptions d =
        parallel_from_args({"--model", "m", "--sft-data", "s", "--pref-data", "p", "--out", "runs/x", "--no-merge"});
    const ParallelOptions e = parallel_from_args({"--config", write_recipe(recipe_yaml(d), "defaults.yaml")});
    EXPECT_EQ(recipe_yaml(e), recipe_yaml(d));
    EXPECT_FALSE(e.merge_enabled);
    EXPECT_TRUE(e.merge.weights.empty());
    EXPECT_EQ(e.merge.normalize, -1);
}

// ---- The example recipes -----------------------------------------------------------------------

TEST(Examples, ZephyrRecipesParse) {
    testing::internal::CaptureStderr();
    TrainOptions sft = TrainOptions::defaults(Method::sft);
    apply_recipe((kSource / "recipes/sft-zephyr-lora.yaml").string(), sft);
    TrainOptions dpo = TrainOptions::defaults(Method::dpo);
    apply_recipe((kSource / "recipes/dpo-zephyr-lora.yaml").string(), dpo);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");  // no ignored keys in our own recipes
    EXPECT_NO_THROW(validate(sft));
    EXPECT_NO_THROW(validate(dpo));
    // The handbook's zephyr-7b-beta QLoRA hyperparameters.
    EXPECT_EQ(sft.lora.r, 16);
    EXPECT_EQ(sft.lora.alpha, 16.0f);
    EXPECT_EQ(sft.lora.dropout, 0.05f);
    EXPECT_EQ(sft.lora.targets, kAllTargets);
    EXPECT_EQ(sft.learning_rate, 2e-4);
    EXPECT_EQ(sft.lr_scheduler_type, ScheduleType::cosine);
    EXPECT_EQ(sft.warmup_ratio, 0.1);
    EXPECT_EQ(sft.per_device_train_batch_size, 4);
    EXPECT_EQ(sft.gradient_accumulation_steps, 2);
    EXPECT_EQ(sft.data.max_length, 2048);
    EXPECT_EQ(sft.num_train_epochs, 1.0);
    EXPECT_EQ(dpo.lora.r, 128);
    EXPECT_EQ(dpo.lora.alpha, 128.0f);
    EXPECT_EQ(dpo.lora.dropout, 0.05f);
    EXPECT_EQ(dpo.lora.targets, kAllTargets);
    EXPECT_EQ(dpo.learning_rate, 5e-6);
    EXPECT_EQ(dpo.preference.beta, 0.01);
    EXPECT_EQ(dpo.per_device_train_batch_size, 4);
    EXPECT_EQ(dpo.gradient_accumulation_steps, 4);
    EXPECT_EQ(dpo.data.max_length, 1024);
    EXPECT_EQ(dpo.data.max_prompt_length, 512);
    EXPECT_EQ(dpo.lr_scheduler_type, ScheduleType::cosine);
    EXPECT_EQ(dpo.warmup_ratio, 0.1);
    // A recipe for one method refuses to run as another.
    TrainOptions orpo = TrainOptions::defaults(Method::orpo);
    expect_input_error([&] { apply_recipe((kSource / "recipes/dpo-zephyr-lora.yaml").string(), orpo); },
                       {"dpo-zephyr-lora.yaml:", "method: this recipe is for dpo, but the run is orpo"});
}

TEST(Examples, PaftTinyParses) {
    testing::internal::CaptureStderr();
    const ParallelOptions p = parallel_from_args({"--config", (kSource / "recipes/paft-tiny.yaml").string()});
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
    EXPECT_EQ(p.output_dir, "runs/paft-tiny");
    EXPECT_EQ(p.sft.lora.r, 8);
    EXPECT_EQ(p.preference.lora.r, 8);
    EXPECT_EQ(p.sft.lora.targets, kAllTargets);
    EXPECT_EQ(p.preference.method, Method::dpo);
    EXPECT_EQ(p.sft.l1_lambda, 1e-4);
    EXPECT_EQ(p.preference.data.max_prompt_length, 256);
    EXPECT_EQ(p.merge.method, "ties");
    EXPECT_EQ(p.merge.densities, (std::vector<double>{0.5, 0.5}));
    // --pref-method orpo switches the branch, as the recipe's comment says.
    const ParallelOptions q =
        parallel_from_args({"--config", (kSource / "recipes/paft-tiny.yaml").string(), "--pref-method", "orpo"});
    EXPECT_EQ(q.preference.preference.loss, PreferenceLoss::orpo);
}

// Help text builds (no flag is registered twice) and lists the short names first.
TEST(Flags, Help) {
    CLI::App   app;
    TrainFlags flags;
    add_train_flags(app, flags);
    const std::string help = app.help();
    for (const char * part : {"--model", "--model-name-or-path", "--batch-size", "--no-packing", "--config", "--resume",
                              "Preferences (DPO, ORPO)"}) {
        EXPECT_NE(help.find(part), std::string::npos) << part;
    }
    CLI::App      papp;
    ParallelFlags pflags;
    add_parallel_flags(papp, pflags);
    EXPECT_NE(papp.help().find("--merge-method"), std::string::npos);
}

}  // namespace

// The base's loading keys (transformers' from_pretrained / BitsAndBytesConfig names) reach
// Model::load's options; TRL's use_bnb_nested_quant is double quantization's other name.
TEST(Recipe, LoadingKeys) {
    TrainOptions o = TrainOptions::defaults(Method::sft);
    apply_recipe(write_recipe("load_in_4bit: true\nbnb_4bit_quant_type: fp4\nuse_bnb_nested_quant: true\n"
                              "torch_dtype: float16\n", "load.yaml"),
                 o);
    const LoadOptions l = o.load_options();
    EXPECT_EQ(l.quantization, Quantization::FP4);
    EXPECT_TRUE(l.double_quant);
    EXPECT_EQ(l.torch_dtype, TorchDtype::F16);
    EXPECT_EQ(TrainOptions::defaults(Method::dpo).load_options().quantization, Quantization::None);
    const std::string bad = write_recipe("bnb_4bit_quant_type: int4\n", "bad-load.yaml");
    expect_input_error([&] { apply_recipe(bad, o); }, {bad + ":1", "bnb_4bit_quant_type", "int4"});
    TrainOptions both = TrainOptions::defaults(Method::sft);
    apply_recipe(write_recipe("load_in_4bit: true\nload_in_8bit: true\n", "both.yaml"), both);
    expect_input_error([&] { both.load_options(); }, {"load_in_8bit", "load_in_4bit"});
}
