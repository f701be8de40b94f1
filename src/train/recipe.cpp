// Recipes and flags over one table of option keys (recipe.h). A value, whether it comes from a
// YAML file or the command line, is text handed to the key's setter; the caller adds where it came
// from ("recipe.yaml:7: learning_rate" or "--learning-rate") to any error.
//
// The names of schedules and losses are checked against tables of our own here rather than
// through schedule_from_name / preference_loss_from_name, so that reading options does not link
// the trainer's code (the enums are shared).
#include "train/recipe.h"

#include "core/error.h"
#include "core/suggest.h"
#include "io/fs.h"
#include "io/yaml_file.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>

namespace paft {
namespace {

// ---- Values from text and back ----------------------------------------------------------------

std::string quote(const std::string & text) {
    return "'" + text + "'";
}

// A leading '+' is valid YAML and Python but not std::from_chars.
std::string_view unsigned_part(const std::string & text) {
    std::string_view s = text;
    if (s.size() > 1 && s[0] == '+' && s[1] != '-') {
        s.remove_prefix(1);
    }
    return s;
}

// YAML's spellings of infinity and NaN (.inf, -.Inf, .NaN): numbers, but not usable ones.
bool yaml_non_finite(std::string_view s) {
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
        s.remove_prefix(1);
    }
    std::string lower(s);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return (char) std::tolower(c); });
    return lower == ".inf" || lower == ".nan";
}

double parse_double(const std::string & text) {
    const std::string_view s = unsigned_part(text);
    double                 x = 0;
    auto [end, ec]           = std::from_chars(s.data(), s.data() + s.size(), x);
    if (yaml_non_finite(text) || (ec == std::errc() && end == s.data() + s.size() && !std::isfinite(x))) {
        throw InputError("expected a finite number, got " + quote(text));
    }
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
        throw InputError("expected a number, got " + quote(text));
    }
    return x;
}

template <typename Int>
Int parse_integer(const std::string & text) {
    const std::string_view s = unsigned_part(text);
    Int                    x = 0;
    auto [end, ec]           = std::from_chars(s.data(), s.data() + s.size(), x);
    if (ec == std::errc::result_out_of_range) {
        throw InputError("integer out of range: " + text);
    }
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
        const char * want = std::is_signed_v<Int> ? "expected an integer" : "expected a non-negative integer";
        throw InputError(fmt::format("{}, got {}", want, quote(text)));
    }
    return x;
}

// YAML 1.1's booleans (as yaml-cpp and PyYAML read them), and 1 / 0.
bool parse_bool(const std::string & text) {
    std::string s = text;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char) std::tolower(c); });
    if (s == "true" || s == "yes" || s == "on" || s == "1") {
        return true;
    }
    if (s == "false" || s == "no" || s == "off" || s == "0") {
        return false;
    }
    throw InputError("expected true or false, got " + quote(text));
}

template <typename T>
T parse_as(const std::string & text) {
    if constexpr (std::is_same_v<T, bool>) {
        return parse_bool(text);
    } else if constexpr (std::is_same_v<T, std::string>) {
        return text;
    } else if constexpr (std::is_floating_point_v<T>) {
        const double x = parse_double(text);
        if (std::fabs(x) > (double) std::numeric_limits<T>::max()) {
            throw InputError("number out of range: " + text);
        }
        return (T) x;
    } else {
        return parse_integer<T>(text);
    }
}

// The shortest text that reads back to the same value, written the way YAML 1.1 (PyYAML) reads
// a float: with a '.' before any exponent ("2.0e-05", not "2e-05", which PyYAML takes as a string).
template <typename Float>
std::string float_text(Float x) {
    std::string s = fmt::format("{}", x);
    size_t      e = s.find('e');
    if (e != std::string::npos && s.find('.') == std::string::npos) {
        s.insert(e, ".0");
    }
    return s;
}

template <typename T>
std::string text_of(const T & value) {
    if constexpr (std::is_same_v<T, bool>) {
        return value ? "true" : "false";
    } else if constexpr (std::is_same_v<T, std::string>) {
        return value;
    } else if constexpr (std::is_floating_point_v<T>) {
        return float_text(value);
    } else {
        return std::to_string(value);
    }
}

std::string trim(const std::string & s) {
    const size_t begin = s.find_first_not_of(" \t");
    const size_t end   = s.find_last_not_of(" \t");
    return begin == std::string::npos ? "" : s.substr(begin, end - begin + 1);
}

// "a, b,c" -> {"a", "b", "c"}; "" -> {}.
std::vector<std::string> split_list(const std::string & text) {
    std::vector<std::string> items;
    if (trim(text).empty()) {
        return items;
    }
    std::stringstream ss(text);
    for (std::string item; std::getline(ss, item, ',');) {
        item = trim(item);
        if (item.empty()) {
            throw InputError("empty item in the list " + quote(text));
        }
        items.push_back(item);
    }
    return items;
}

std::string join(const std::vector<std::string> & items, const char * separator = ", ") {
    return fmt::format("{}", fmt::join(items, separator));
}

// ---- Names --------------------------------------------------------------------------------------

template <typename T>
using NameTable = std::vector<std::pair<const char *, T>>;

template <typename T>
std::string table_names(const NameTable<T> & table) {
    std::vector<std::string> names;
    for (const auto & [name, value] : table) {
        names.push_back(name);
    }
    return join(names);
}

template <typename T>
T choose(const NameTable<T> & table, const std::string & text) {
    for (const auto & [name, value] : table) {
        if (text == name) {
            return value;
        }
    }
    throw InputError(fmt::format("expected one of {}, got {}", table_names(table), quote(text)));
}

// The first name of `value` (tables list the canonical name first).
template <typename T>
const char * name_of(const NameTable<T> & table, T value) {
    for (const auto & [name, v] : table) {
        if (v == value) {
            return name;
        }
    }
    return "?";
}

// TrainingArguments' optim names whose update is torch.optim.AdamW's or SGD's. bitsandbytes'
// paged_adamw_32bit (the handbook's DPO QLoRA choice) keeps 32-bit state and only pages it between
// GPU and CPU memory; the 8-bit variants quantise their state, so they are not offered.
const NameTable<std::string> kOptimizers = {{"adamw_torch", "adamw"},
                                            {"adamw", "adamw"},
                                            {"adamw_torch_fused", "adamw"},
                                            {"paged_adamw_32bit", "adamw"},
                                            {"sgd", "sgd"}};

const NameTable<bool> kOrpoNll = {{"prompt", true}, {"completion", false}};

const NameTable<std::string> kTorchDtypes = {{"auto", "auto"},         {"float32", "float32"}, {"bfloat16", "bfloat16"},
                                            {"float16", "float16"},   {"fp32", "float32"},    {"bf16", "bfloat16"},
                                            {"fp16", "float16"}};
const NameTable<std::string> kBnb4Types   = {{"nf4", "nf4"}, {"fp4", "fp4"}};

// A merge method's name, checked against the merge registry (merge/methods.h).
std::string merge_method(const std::string & text) {
    if (!find_merge_method(text)) {
        throw InputError(fmt::format("expected one of {}, got {}", merge_method_list(), quote(text)));
    }
    return text;
}

// ---- Which methods use a key -----------------------------------------------------------------

enum Scope : unsigned { SFT = 1, DPO = 2, ORPO = 4, PREF = DPO | ORPO, ALL = SFT | DPO | ORPO };

unsigned scope_of(Method m) {
    return m == Method::sft ? SFT : m == Method::dpo ? DPO : ORPO;
}

std::string scope_text(unsigned scope) {
    std::vector<std::string> names;
    for (Method m : {Method::sft, Method::dpo, Method::orpo}) {
        if (scope & scope_of(m)) {
            names.push_back(method_name(m));
        }
    }
    return join(names, " and ");
}

// ---- The key table ----------------------------------------------------------------------------

enum class Kind { text, number, integer, boolean, choice, list };

using Setter = std::function<void(TrainOptions &, const std::string &)>;
using Getter = std::function<std::string(const TrainOptions &)>;

struct Access {
    Kind   kind;
    Setter set;
    Getter get;
};

struct Key {
    const char * name;
    const char * group;
    unsigned     scope;
    const char * help;
    Access       access;
    const char * short_flag = nullptr;  // a shorter flag, e.g. "--model" (the first name in --help)
    const char * alias      = nullptr;  // another recipe name (an older TRL's)
    const char * null_value = nullptr;  // what a YAML null means; nullptr: null is an error
};

// A field of TrainOptions reached by `field` (a generic lambda, so it serves const and non-const).
template <typename F>
Access plain(F field) {
    using T         = std::decay_t<decltype(field(std::declval<TrainOptions &>()))>;
    const Kind kind = std::is_same_v<T, bool>          ? Kind::boolean
                      : std::is_same_v<T, std::string> ? Kind::text
                      : std::is_floating_point_v<T>    ? Kind::number
                                                       : Kind::integer;
    return {kind, [field](TrainOptions & o, const std::string & v) { field(o) = parse_as<T>(v); },
            [field](const TrainOptions & o) { return text_of(field(o)); }};
}

#define FIELD(member) [](auto & o) -> auto & { return o.member; }

// A name from `table` stored as its value.
template <typename F, typename T>
Access choice(F field, const NameTable<T> & table) {
    return {Kind::choice, [field, &table](TrainOptions & o, const std::string & v) { field(o) = choose(table, v); },
            [field, &table](const TrainOptions & o) { return std::string(name_of(table, field(o))); }};
}

// A built-in template's name or a Jinja file. The handbook's recipes put the template's text
// itself here, which would otherwise fail later as a file that does not exist.
Access chat_template() {
    auto set = [](TrainOptions & o, const std::string & v) {
        if (v.find("{%") != std::string::npos || v.find("{{") != std::string::npos) {
            throw InputError("this is a template's text; give a built-in name (chatml, zephyr, llama3, llama2) or "
                             "the path of a .jinja file holding it");
        }
        o.chat_template = v;
    };
    return {Kind::text, set, [](const TrainOptions & o) { return o.chat_template; }};
}

Access lora_targets() {
    auto set = [](TrainOptions & o, const std::string & v) {
        const std::vector<std::string> items = split_list(v);
        if (items.empty()) {
            throw InputError("give at least one module (q_proj, ..., down_proj, or all-linear)");
        }
        o.lora.targets = parse_lora_targets(join(items, ","));
    };
    auto get = [](const TrainOptions & o) {
        std::vector<std::string> names;
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (o.lora.targets[t]) {
                names.push_back(lora_target_name(t));
            }
        }
        return join(names, ",");
    };
    return {Kind::list, set, get};
}

// Only the losses of the options' method are accepted (ORPO has one loss; DPO the rest); the
// names are objective.h's.
Access loss_type() {
    auto set = [](TrainOptions & o, const std::string & v) {
        const PreferenceLoss loss = preference_loss_from_name(v);
        if ((loss == PreferenceLoss::orpo) != (o.method == Method::orpo)) {
            throw InputError(o.method == Method::orpo
                                 ? fmt::format("orpo takes only loss_type orpo, got {}", quote(v))
                                 : fmt::format("expected one of sigmoid, ipo, hinge, robust, simpo, got {}", quote(v)));
        }
        o.preference.loss = loss;
    };
    auto get = [](const TrainOptions & o) { return std::string(preference_loss_name(o.preference.loss)); };
    return {Kind::choice, set, get};
}

// The schedule's name, as schedule.h names them.
Access lr_scheduler_type() {
    auto set = [](TrainOptions & o, const std::string & v) { o.lr_scheduler_type = schedule_from_name(v); };
    auto get = [](const TrainOptions & o) { return std::string(schedule_name(o.lr_scheduler_type)); };
    return {Kind::choice, set, get};
}

const char * kInputs   = "Inputs and output";
const char * kLoading  = "The base's weights (from_pretrained, BitsAndBytesConfig)";
const char * kLora     = "LoRA (PEFT)";
const char * kOptimize = "Optimization";
const char * kLogging  = "Logging and checkpoints";
const char * kData     = "Data";
const char * kSft      = "SFT: PAFT's L1 penalty on the adapter's delta";
const char * kPref     = "Preferences (DPO, ORPO)";

const std::vector<Key> & keys() {
    static const std::vector<Key> table = {
        {"model_name_or_path", kInputs, ALL, "Hugging Face model directory (config.json, *.safetensors)",
         plain(FIELD(model)), "--model", nullptr, ""},
        {"tokenizer_name_or_path", kInputs, ALL, "Tokenizer directory (default: the model's)", plain(FIELD(tokenizer)),
         "--tokenizer", nullptr, ""},
        {"chat_template", kInputs, ALL,
         "Chat template: a built-in name (chatml, zephyr, llama3, llama2) or a Jinja file (default: the tokenizer's)",
         chat_template(), nullptr, nullptr, ""},
        {"train_data", kInputs, ALL, "Training data: JSON Lines or a JSON array", plain(FIELD(train_data)), "--data",
         nullptr, ""},
        {"eval_data", kInputs, ALL, "Evaluation data (optional)", plain(FIELD(eval_data)), nullptr, nullptr, ""},
        {"output_dir", kInputs, ALL, "Output folder: the adapter, checkpoints, logs", plain(FIELD(output_dir)), "--out",
         nullptr, ""},
        {"init_adapter", kInputs, ALL, "Start from this PEFT adapter instead of a fresh one",
         plain(FIELD(init_adapter)), nullptr, nullptr, ""},

        {"torch_dtype", kLoading, ALL,
         "Type the frozen weights are kept in: auto (as stored), float32, bfloat16, float16",
         choice(FIELD(torch_dtype), kTorchDtypes)},
        {"load_in_8bit", kLoading, ALL,
         "Quantize the seven linear layers to 8 bits at load (blocks of 32 with a scale: llama.cpp's Q8_0, not "
         "bitsandbytes' LLM.int8)",
         plain(FIELD(load_in_8bit))},
        {"load_in_4bit", kLoading, ALL, "Quantize the seven linear layers to 4 bits at load (bitsandbytes, blocks of 64)",
         plain(FIELD(load_in_4bit))},
        {"bnb_4bit_quant_type", kLoading, ALL, "4-bit data type: nf4 or fp4", choice(FIELD(bnb_4bit_quant_type), kBnb4Types)},
        {"bnb_4bit_use_double_quant", kLoading, ALL, "Quantize the 4-bit blocks' absmax values too (8 bits, blocks of 256)",
         plain(FIELD(bnb_4bit_use_double_quant)), nullptr, "use_bnb_nested_quant"},

        {"lora_r", kLora, ALL, "LoRA rank r", plain(FIELD(lora.r))},
        {"lora_alpha", kLora, ALL, "LoRA alpha (the scale is alpha / r)", plain(FIELD(lora.alpha))},
        {"lora_dropout", kLora, ALL, "Dropout on the LoRA input", plain(FIELD(lora.dropout))},
        {"lora_target_modules", kLora, ALL,
         "Modules to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all-linear",
         lora_targets()},
        {"use_rslora", kLora, ALL, "Scale by alpha / sqrt(r) (rsLoRA)", plain(FIELD(lora.rslora))},

        {"optim", kOptimize, ALL, "Optimizer: adamw_torch (also adamw, adamw_torch_fused, paged_adamw_32bit) or sgd",
         choice(FIELD(optimizer.name), kOptimizers)},
        {"adam_beta1", kOptimize, ALL, "AdamW beta1", plain(FIELD(optimizer.beta1))},
        {"adam_beta2", kOptimize, ALL, "AdamW beta2", plain(FIELD(optimizer.beta2))},
        {"adam_epsilon", kOptimize, ALL, "AdamW epsilon", plain(FIELD(optimizer.eps))},
        {"momentum", kOptimize, ALL, "SGD momentum", plain(FIELD(optimizer.momentum))},
        {"weight_decay", kOptimize, ALL, "Weight decay", plain(FIELD(optimizer.weight_decay))},
        {"learning_rate", kOptimize, ALL, "Peak learning rate", plain(FIELD(learning_rate))},
        {"lr_scheduler_type", kOptimize, ALL, "Schedule: linear, cosine, constant, constant_with_warmup, inverse_sqrt",
         lr_scheduler_type()},
        {"warmup_ratio", kOptimize, ALL, "Warmup as a share of the steps (when warmup_steps is 0)",
         plain(FIELD(warmup_ratio))},
        {"warmup_steps", kOptimize, ALL, "Warmup steps (overrides warmup_ratio when > 0)", plain(FIELD(warmup_steps))},
        {"num_train_epochs", kOptimize, ALL, "Epochs (may be fractional)", plain(FIELD(num_train_epochs)), "--epochs"},
        {"max_steps", kOptimize, ALL, "Optimizer steps; > 0 overrides the epochs, -1 = by epochs",
         plain(FIELD(max_steps)), nullptr, nullptr, "-1"},
        {"per_device_train_batch_size", kOptimize, ALL, "Examples (SFT) or pairs per micro-batch",
         plain(FIELD(per_device_train_batch_size)), "--batch-size"},
        {"per_device_eval_batch_size", kOptimize, ALL, "Evaluation batch size",
         plain(FIELD(per_device_eval_batch_size))},
        {"gradient_accumulation_steps", kOptimize, ALL, "Micro-batches per optimizer step",
         plain(FIELD(gradient_accumulation_steps)), "--grad-accum"},
        {"max_grad_norm", kOptimize, ALL, "Clip the gradient's global norm to this (0 = no clipping)",
         plain(FIELD(max_grad_norm))},
        {"seed", kOptimize, ALL, "Seed of the adapter's initialisation, the shuffling and dropout", plain(FIELD(seed))},
        {"threads", kOptimize, ALL, "Threads (0 = every core)", plain(FIELD(threads))},
        {"gradient_checkpointing", kOptimize, ALL, "Recompute activations in the backward pass to save memory",
         plain(FIELD(gradient_checkpointing))},

        {"logging_steps", kLogging, ALL, "Log every N optimizer steps (0 = never)", plain(FIELD(logging_steps))},
        {"eval_steps", kLogging, ALL, "Evaluate every N steps (0 = at the end only, with eval data)",
         plain(FIELD(eval_steps))},
        {"save_steps", kLogging, ALL, "Save a checkpoint every N steps (0 = never)", plain(FIELD(save_steps))},

        {"max_length", kData, ALL, "Truncate sequences to this many tokens (0 = no limit)",
         plain(FIELD(data.max_length)), nullptr, "max_seq_length", "0"},
        {"max_prompt_length", kData, PREF, "Keep the prompt's last N tokens (0 = no limit)",
         plain(FIELD(data.max_prompt_length)), nullptr, nullptr, "0"},
        {"packing", kData, SFT, "Pack examples into rows of max_length (best-fit decreasing, as TRL)",
         plain(FIELD(packing))},
        {"assistant_only_loss", kData, SFT, "Conversations: train on the assistant turns only",
         plain(FIELD(data.assistant_only_loss))},
        {"completion_only_loss", kData, SFT, "Prompt + completion: train on the completion only",
         plain(FIELD(data.completion_only_loss))},

        {"l1_lambda", kSft, SFT, "Weight of the L1 penalty on delta W = s B A (0 = none)", plain(FIELD(l1_lambda))},
        {"sparsity_threshold", kSft, SFT, "Entries of delta W below this count as zero in the sparsity reported",
         plain(FIELD(sparsity_threshold))},

        {"beta", kPref, PREF, "DPO's beta; ORPO's lambda", plain(FIELD(preference.beta))},
        {"loss_type", kPref, PREF, "dpo: sigmoid, ipo, hinge, robust, simpo; orpo: orpo", loss_type()},
        {"label_smoothing", kPref, DPO, "Label smoothing epsilon in [0, 0.5) (cDPO, robust)",
         plain(FIELD(preference.label_smoothing))},
        {"simpo_gamma", kPref, DPO, "SimPO's target reward margin", plain(FIELD(preference.simpo_gamma))},
        {"orpo_nll", kPref, ORPO, "ORPO's NLL term over prompt + chosen (TRL) or the completion only",
         choice(FIELD(preference.orpo_prompt_nll), kOrpoNll)},
    };
    return table;
}

#undef FIELD

const Key * find_key(const std::string & name) {
    for (const Key & k : keys()) {
        if (name == k.name || (k.alias && name == k.alias)) {
            return &k;
        }
    }
    return nullptr;
}

// ---- Handbook keys paft has no use for ---------------------------------------------------------

// Mixed precision, attention kernels, the Hub, logging back-ends, data loading, the 4-bit compute
// type (paft computes in f32 whatever the weights' type): settings of the Python stack that do not
// change what paft computes.
const std::set<std::string> & ignored_keys() {
    static const std::set<std::string> keys = {
        "bf16", "fp16", "tf32", "attn_implementation", "use_flash_attention_2",
        "report_to", "run_name", "push_to_hub", "hub_model_id", "hub_strategy", "hub_private_repo",
        "do_train", "do_eval", "eval_strategy", "evaluation_strategy", "save_strategy", "logging_strategy",
        "logging_first_step", "log_level", "overwrite_output_dir", "remove_unused_columns", "use_peft",
        "dataset_mixer", "dataset_splits", "dataset_configs", "dataset_num_proc", "preprocessing_num_workers",
        "dataloader_num_workers", "save_total_limit", "save_only_model", "gradient_checkpointing_kwargs",
        "model_revision", "trust_remote_code", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage", "ddp_timeout", "ddp_find_unused_parameters", "auto_find_batch_size",
        "include_tokens_per_second", "use_liger", "use_liger_kernel", "torch_compile"};
    return keys;
}

// ---- Merge keys (the merge: section; flags --merge-KEY) ---------------------------------------

std::vector<double> parse_numbers(const std::string & text) {
    std::vector<double> xs;
    for (const std::string & item : split_list(text)) {
        xs.push_back(parse_double(item));
    }
    return xs;
}

std::string numbers_text(const std::vector<double> & xs) {
    std::vector<std::string> items;
    for (double x : xs) {
        items.push_back(float_text(x));
    }
    return join(items, ",");
}

// One weight or density per branch (sft, preference), or none (1 each).
std::vector<double> branch_numbers(const std::string & text, bool densities) {
    std::vector<double> xs = parse_numbers(text);
    if (!xs.empty() && xs.size() != 2) {
        throw InputError(fmt::format("expected 2 values (sft, preference), got {}", xs.size()));
    }
    for (double x : xs) {
        if (densities && !(x > 0 && x <= 1)) {
            throw InputError(fmt::format("a density must be in (0, 1], got {}", x));
        }
    }
    return xs;
}

struct MergeKey {
    const char * name;
    const char * help;
    Kind         kind;
    const char * null_value;
    std::function<void(ParallelOptions &, const std::string &)> set;
    std::function<std::string(const ParallelOptions &)>         get;
};

const std::vector<MergeKey> & merge_keys() {
    static const std::vector<MergeKey> table = {
        {"enabled", "Merge the two adapters into the base after training", Kind::boolean, nullptr,
         [](ParallelOptions & p, const std::string & v) { p.merge_enabled = parse_bool(v); },
         [](const ParallelOptions & p) { return text_of(p.merge_enabled); }},
        {"method", "Merge method (docs/MERGING.md): ties, dare_ties, task_arithmetic, linear, slerp, ...", Kind::choice, nullptr,
         [](ParallelOptions & p, const std::string & v) { p.merge.method = merge_method(v); },
         [](const ParallelOptions & p) { return p.merge.method; }},
        {"weights", "Weights of the sft and preference deltas (default 1 each)", Kind::list, "",
         [](ParallelOptions & p, const std::string & v) { p.merge.weights = branch_numbers(v, false); },
         [](const ParallelOptions & p) { return numbers_text(p.merge.weights); }},
        {"densities", "ties, dare_ties: share of each delta kept (default 1 each)", Kind::list, "",
         [](ParallelOptions & p, const std::string & v) { p.merge.densities = branch_numbers(v, true); },
         [](const ParallelOptions & p) { return numbers_text(p.merge.densities); }},
        {"normalize", "Divide by the weights' sum: true, false, or default (the method's)", Kind::choice, "default",
         [](ParallelOptions & p, const std::string & v) {
             p.merge.normalize = v == "default" ? -1 : parse_bool(v) ? 1 : 0;
         },
         [](const ParallelOptions & p) {
             return std::string(p.merge.normalize < 0 ? "default" : p.merge.normalize ? "true" : "false");
         }},
        {"lambda", "Scale of the merged delta", Kind::number, nullptr,
         [](ParallelOptions & p, const std::string & v) { p.merge.lambda = parse_double(v); },
         [](const ParallelOptions & p) { return float_text(p.merge.lambda); }},
        {"t", "slerp: interpolation from the base (0) to the model (1); its one adapter is merge.weights' first", Kind::number, "",
         [](ParallelOptions & p, const std::string & v) {
             p.merge.t = v.empty() ? std::nullopt : std::optional<double>(parse_double(v));
         },
         [](const ParallelOptions & p) { return p.merge.t ? float_text(*p.merge.t) : std::string(); }},
        {"seed", "dare_ties, della: seed of the random masks", Kind::integer, nullptr,
         [](ParallelOptions & p, const std::string & v) { p.merge.seed = parse_integer<uint64_t>(v); },
         [](const ParallelOptions & p) { return text_of(p.merge.seed); }},
    };
    return table;
}

const MergeKey * find_merge_key(const std::string & name) {
    for (const MergeKey & k : merge_keys()) {
        if (name == k.name) {
            return &k;
        }
    }
    return nullptr;
}

const char * const kSections[] = {"sft", "preference", "merge"};

bool is_section(const std::string & name) {
    return std::find(std::begin(kSections), std::end(kSections), name) != std::end(kSections);
}

std::vector<std::string> candidate_keys(const std::string & section, bool parallel) {
    std::vector<std::string> names;
    if (section == "merge") {
        for (const MergeKey & k : merge_keys()) {
            names.push_back(k.name);
        }
        return names;
    }
    for (const Key & k : keys()) {
        names.push_back(k.name);
        if (k.alias) {
            names.push_back(k.alias);
        }
    }
    names.push_back("method");
    if (parallel && section.empty()) {
        names.push_back("branch_ranks");
        names.insert(names.end(), std::begin(kSections), std::end(kSections));
    }
    return names;
}

// ---- Settings: one key = value, from a recipe line or a flag ------------------------------------

struct Setting {
    std::string                section;  // "" (top level), "sft", "preference", "merge"
    std::string                key;      // as written (an alias stays an alias)
    std::optional<std::string> value;    // nullopt: YAML null
    bool                       list = false;  // a YAML sequence, joined with ','
    std::string                where;    // "recipe.yaml:7", or the flag: "--learning-rate"
    std::string                label;    // "recipe.yaml:7: learning_rate", or the flag
};

[[noreturn]] void unknown_key(const Setting & s, bool parallel) {
    const std::string near    = closest_name(s.key, candidate_keys(s.section, parallel));
    const std::string in      = s.section.empty() ? "" : " in " + s.section + ":";
    const std::string suggest = near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near);
    throw InputError(fmt::format("{}: unknown key '{}'{}{}", s.where, s.key, in, suggest));
}

[[noreturn]] void fail(const Setting & s, const std::string & message) {
    throw InputError(s.label + ": " + message);
}

// The setting's text for a key of `kind` that reads YAML null as `null_value`.
std::string value_text(const Setting & s, Kind kind, const char * null_value) {
    if (s.list && kind != Kind::list) {
        fail(s, "expected a single value, got a list");
    }
    if (!s.value) {
        if (!null_value) {
            fail(s, "expected a value, got null");
        }
        return null_value;
    }
    return *s.value;
}

// Runs a setter, naming the setting in its error.
template <typename Fn>
void with_label(const Setting & s, Fn && fn) {
    try {
        fn();
    } catch (const InputError & e) {
        fail(s, e.what());
    }
}

// A setting of the key table applied to one run's options.
void apply_setting(TrainOptions & o, const Setting & s) {
    if (s.key == "method") {
        const std::string text = value_text(s, Kind::choice, nullptr);
        if (text != method_name(o.method)) {
            fail(s, fmt::format("this recipe is for {}, but the run is {}", text, method_name(o.method)));
        }
        return;
    }
    const Key * k = find_key(s.key);
    if (!k) {
        unknown_key(s, false);
    }
    if (!(k->scope & scope_of(o.method))) {
        fail(s, fmt::format("applies to {}, not {}", scope_text(k->scope), method_name(o.method)));
    }
    const std::string text = value_text(s, k->access.kind, k->null_value);
    with_label(s, [&] { k->access.set(o, text); });
}

// ---- Reading YAML --------------------------------------------------------------------------------

struct RecipeFile {
    std::vector<Setting>     settings;
    std::vector<std::string> ignored;  // "bf16 (line 3)"
};

class RecipeReader {
public:
    // `own_sections`: top-level keys another reader takes care of (paft run's), skipped here.
    RecipeReader(std::string path, bool parallel, std::vector<std::string> own_sections = {})
        : path_(std::move(path)), parallel_(parallel), own_sections_(std::move(own_sections)) {}

    RecipeFile read() {
        const YAML::Node root = load_yaml_file(path_, "recipe");
        if (root.IsNull()) {
            return {};  // an empty recipe changes nothing
        }
        if (!root.IsMap()) {
            throw InputError(fmt::format("{}:{}: a recipe is a mapping of keys to values", path_, line(root)));
        }
        read_map(root, "");
        return std::move(file_);
    }

    // One section's mapping (a node of the file at path_).
    RecipeFile read_section_node(const YAML::Node & map, const std::string & section) {
        read_section(map, section, fmt::format("{}:{}", path_, line(map)));
        return std::move(file_);
    }

private:
    static int line(const YAML::Node & node) { return node.Mark().line + 1; }

    void read_map(const YAML::Node & map, const std::string & section) {
        std::map<std::string, int> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const YAML::Node   key   = it->first;  // copies: the iterator hands out temporaries
            const YAML::Node   value = it->second;
            const std::string  where = fmt::format("{}:{}", path_, line(key));
            if (!key.IsScalar()) {
                throw InputError(where + ": a key must be a name");
            }
            const std::string name = key.Scalar();
            if (auto [first, fresh] = seen.emplace(name, line(key)); !fresh) {
                throw InputError(fmt::format("{}: {}: given twice (first on line {})", where, name, first->second));
            }
            if (section.empty() && std::count(own_sections_.begin(), own_sections_.end(), name)) {
                continue;
            }
            if (section.empty() && is_section(name)) {
                read_section(value, name, where);
            } else if (ignored_keys().count(name)) {
                file_.ignored.push_back(fmt::format("{} (line {})", name, line(key)));
            } else {
                read_value(value, section, name, where);
            }
        }
    }

    void read_section(const YAML::Node & value, const std::string & name, const std::string & where) {
        if (!parallel_) {
            throw InputError(fmt::format("{}: {}: sections belong to paft parallel's recipes; a recipe for one "
                                         "method lists its keys at the top level",
                                         where, name));
        }
        if (value.IsNull()) {
            return;
        }
        if (!value.IsMap()) {
            throw InputError(fmt::format("{}: {}: expected a section of keys", where, name));
        }
        read_map(value, name);
    }

    void read_value(const YAML::Node & value, const std::string & section, const std::string & name,
                    const std::string & where) {
        const std::string path = section.empty() ? name : section + "." + name;
        Setting           s{section, name, std::nullopt, false, where, where + ": " + path};
        const bool known = section == "merge" ? find_merge_key(name) != nullptr
                                              : find_key(name) || name == "method" ||
                                                    (parallel_ && section.empty() && name == "branch_ranks");
        if (!known) {
            unknown_key(s, parallel_);
        }
        if (value.IsScalar()) {
            s.value = value.Scalar();
        } else if (value.IsSequence()) {
            std::vector<std::string> items;
            for (const YAML::Node & item : value) {
                if (!item.IsScalar()) {
                    fail(s, "expected a list of values");
                }
                items.push_back(item.Scalar());
            }
            s.value = join(items, ",");
            s.list  = true;
        } else if (value.IsMap()) {
            fail(s, "expected a value, got a mapping");
        }
        file_.settings.push_back(std::move(s));
    }

    std::string              path_;
    bool                     parallel_;
    std::vector<std::string> own_sections_;
    RecipeFile               file_;
};

void warn_ignored(const std::string & path, const std::vector<std::string> & ignored) {
    if (!ignored.empty()) {
        fmt::print(stderr, "paft: warning: {}: ignoring keys paft has no use for: {}\n", path, join(ignored));
    }
}

// ---- Writing YAML --------------------------------------------------------------------------------

// A scalar as YAML writes it: plain when that reads back as the same text, quoted otherwise.
std::string yaml_scalar(const std::string & text) {
    YAML::Emitter out;
    out << text;
    return out.c_str();
}

std::string yaml_value(Kind kind, const std::string & text) {
    if (kind == Kind::list) {
        std::vector<std::string> items;
        for (const std::string & item : split_list(text)) {
            items.push_back(yaml_scalar(item));
        }
        return "[" + join(items) + "]";
    }
    return kind == Kind::text || kind == Kind::choice ? yaml_scalar(text) : text;
}

// The keys of `o` whose scope includes its method, by group; `skip` leaves some out.
void write_keys(std::string & out, const TrainOptions & o, const std::string & indent,
                const std::function<bool(const Key &)> & skip) {
    const char * group = nullptr;
    for (const Key & k : keys()) {
        if (!(k.scope & scope_of(o.method)) || skip(k)) {
            continue;
        }
        if (group != k.group) {
            group = k.group;
            out += fmt::format("\n{}# {}\n", indent, group);
        }
        out += fmt::format("{}{}: {}\n", indent, k.name, yaml_value(k.access.kind, k.access.get(o)));
    }
}

// ---- Flags ------------------------------------------------------------------------------------

std::string kebab(const std::string & name) {
    std::string s = name;
    std::replace(s.begin(), s.end(), '_', '-');
    return "--" + s;
}

// The flag a key is known by in messages: its short name if it has one.
std::string flag_of(const Key & k) {
    return k.short_flag ? k.short_flag : kebab(k.name);
}

const char * type_name(Kind kind) {
    switch (kind) {
        case Kind::text: return "TEXT";
        case Kind::number: return "NUMBER";
        case Kind::integer: return "INT";
        case Kind::boolean: return "BOOL";
        case Kind::choice: return "NAME";
        case Kind::list: return "LIST";
    }
    return "";
}

// An option whose given text is passed to `record` (booleans: a flag, --no-NAME for false, and
// --NAME=false also works). CLI11 refuses an option given twice.
CLI::Option * add_text_flag(CLI::App & cmd, const std::string & names, const std::string & negated, Kind kind,
                            const std::string & help, std::function<void(const std::string &)> record) {
    CLI::Option * opt = kind == Kind::boolean
                            ? cmd.add_flag(names + ",!" + negated)->description(help)
                            : cmd.add_option(names, help)->type_name(type_name(kind));
    return opt->each(std::move(record))->multi_option_policy(CLI::MultiOptionPolicy::Throw);
}

// ---- Parallel recipes ------------------------------------------------------------------------

// A top-level key applies to the branches whose method uses it; a key neither uses is an error.
void apply_shared(ParallelOptions & p, const Setting & s) {
    if (s.key == "output_dir") {
        p.output_dir = value_text(s, Kind::text, "");
        return;
    }
    if (s.key == "threads") {
        with_label(s, [&] { p.threads = parse_integer<int>(value_text(s, Kind::integer, nullptr)); });
        return;
    }
    if (s.key == "branch_ranks") {
        const std::string text  = value_text(s, Kind::text, "half");
        const size_t      colon = text.find(':');
        if (text == "half") {
            p.sft_ranks = p.preference_ranks = 0;
            return;
        }
        with_label(s, [&] {
            if (colon == std::string::npos) {
                throw InputError("expected SFT:PREFERENCE rank counts (e.g. 1:3) or half, got " + quote(text));
            }
            p.sft_ranks        = parse_integer<int>(text.substr(0, colon));
            p.preference_ranks = parse_integer<int>(text.substr(colon + 1));
            if (p.sft_ranks < 1 || p.preference_ranks < 1) {
                throw InputError("each branch needs at least one rank, got " + quote(text));
            }
        });
        return;
    }
    if (s.key == "method") {
        fail(s, "the preference branch's method (dpo or orpo) goes in the preference: section");
    }
    const Key * k = find_key(s.key);
    if (!k) {
        unknown_key(s, true);
    }
    bool applied = false;
    for (TrainOptions * branch : {&p.sft, &p.preference}) {
        if (k->scope & scope_of(branch->method)) {
            apply_setting(*branch, s);
            applied = true;
        }
    }
    if (!applied) {
        apply_setting(p.preference, s);  // fails, naming the methods the key is for
    }
}

void apply_parallel_setting(ParallelOptions & p, const Setting & s) {
    if (s.section.empty()) {
        apply_shared(p, s);
    } else if (s.section == "merge") {
        const MergeKey * k = find_merge_key(s.key);
        if (!k) {
            unknown_key(s, true);
        }
        const std::string text = value_text(s, k->kind, k->null_value);
        with_label(s, [&] { k->set(p, text); });
    } else {
        const bool     sft = s.section == "sft";
        TrainOptions & br  = sft ? p.sft : p.preference;
        if (sft && s.key == "method" && value_text(s, Kind::choice, nullptr) != "sft") {
            fail(s, "the sft branch's method is sft (the preference branch's goes in preference:)");
        }
        apply_setting(br, s);
        if (s.key == "threads") {
            (sft ? p.sft_threads : p.preference_threads) = br.threads;
        }
    }
}

// The preference branch's method named by the last `preference.method` setting, if any.
std::optional<Method> preference_method(const std::vector<Setting> & settings) {
    std::optional<Method> method;
    for (const Setting & s : settings) {
        if (s.section == "preference" && s.key == "method") {
            const std::string text = value_text(s, Kind::choice, nullptr);
            if (text != "dpo" && text != "orpo") {
                fail(s, "expected dpo or orpo, got " + quote(text));
            }
            method = method_from_name(text);
        }
    }
    return method;
}

// Top-level settings first (they are shared), then the sections', which override them. The
// preference method was chosen before (it picks the branch's defaults), so its settings are skipped.
void apply_parallel_settings(ParallelOptions & p, const std::vector<Setting> & settings) {
    for (bool shared : {true, false}) {
        for (const Setting & s : settings) {
            if (s.section.empty() != shared || (s.section == "preference" && s.key == "method")) {
                continue;
            }
            apply_parallel_setting(p, s);
        }
    }
}

// "sft.learning_rate" -> ("sft", "learning_rate"); "seed" -> ("", "seed").
std::pair<std::string, std::string> split_path(const std::string & path) {
    const size_t dot = path.find('.');
    if (dot != std::string::npos && is_section(path.substr(0, dot))) {
        return {path.substr(0, dot), path.substr(dot + 1)};
    }
    return {"", path};
}

// The fixed parallel flags: (flag, recipe path, help).
struct ParallelFlag {
    const char * flag;
    const char * path;
    Kind         kind;
    const char * help;
};

const std::vector<ParallelFlag> & parallel_flags() {
    static const std::vector<ParallelFlag> table = {
        {"--model", "model_name_or_path", Kind::text, "Hugging Face model directory (both branches)"},
        {"--sft-data", "sft.train_data", Kind::text, "SFT training data"},
        {"--pref-data", "preference.train_data", Kind::text, "Preference training data (prompt, chosen, rejected)"},
        {"--pref-method", "preference.method", Kind::choice, "Preference method: dpo or orpo"},
        {"--out", "output_dir", Kind::text, "Output folder (the branches write to OUT/sft and OUT/preference)"},
        {"--threads", "threads", Kind::integer, "Threads for the whole run (0 = every core)"},
        {"--sft-threads", "sft.threads", Kind::integer, "Threads of the SFT branch (0 = an even split)"},
        {"--pref-threads", "preference.threads", Kind::integer, "Threads of the preference branch (0 = an even split)"},
        {"--branch-ranks", "branch_ranks", Kind::text,
         "Under mpirun: ranks of the SFT and preference branches, SFT:PREF (e.g. 1:3; default half)"},
        {"--seed", "seed", Kind::integer, "Seed of both branches"},
        {"--l1-lambda", "sft.l1_lambda", Kind::number, "SFT: weight of the L1 penalty on the adapter's delta"},
        {"--beta", "preference.beta", Kind::number, "DPO's beta; ORPO's lambda"},
    };
    return table;
}

// A flag's setting: the label is the flag that sets `path`, or --set PATH.
Setting parallel_flag_setting(const std::string & path, const std::string & value) {
    std::string label = "--set " + path;
    for (const ParallelFlag & f : parallel_flags()) {
        label = path == f.path ? f.flag : label;
    }
    if (path.rfind("merge.", 0) == 0 && find_merge_key(path.substr(6))) {
        label = kebab("merge_" + path.substr(6));
    }
    if (path.empty()) {
        throw InputError(fmt::format("--set {}: expected PATH=VALUE (PATH: KEY, sft.KEY, preference.KEY or merge.KEY)",
                                     quote(value)));
    }
    auto [section, key] = split_path(path);
    return Setting{section, key, value, false, label, label};
}

void finish_parallel(ParallelOptions & p) {
    const std::filesystem::path out(p.output_dir);
    if (p.sft.output_dir.empty() && !p.output_dir.empty()) {
        p.sft.output_dir = (out / "sft").string();
    }
    if (p.preference.output_dir.empty() && !p.output_dir.empty()) {
        p.preference.output_dir = (out / "preference").string();
    }
    p.sft.threads        = p.sft_threads;
    p.preference.threads = p.preference_threads;
}

}  // namespace

// ---- Public: one method -----------------------------------------------------------------------

std::vector<std::string> recipe_keys() {
    std::vector<std::string> names;
    for (const Key & k : keys()) {
        names.push_back(k.name);
    }
    return names;
}

std::string option_label(const std::string & key) {
    const Key * k = find_key(key);
    return k ? fmt::format("{} ({})", k->name, flag_of(*k)) : key;
}

void apply_recipe(const std::string & path, TrainOptions & options) {
    const RecipeFile file = RecipeReader(path, false).read();
    for (const Setting & s : file.settings) {
        apply_setting(options, s);
    }
    warn_ignored(path, file.ignored);
}

std::string recipe_yaml(const TrainOptions & o) {
    std::string out = fmt::format("# paft {} recipe: every option of the run (paft {} --config FILE reads it)\n",
                                  method_name(o.method), method_name(o.method));
    out += fmt::format("method: {}\n", method_name(o.method));
    write_keys(out, o, "", [](const Key &) { return false; });
    return out;
}

void add_train_flags(CLI::App & cmd, TrainFlags & flags) {
    cmd.add_option("--config", flags.config, "YAML recipe (keys as the handbook's; flags override it)")
        ->type_name("FILE")
        ->group("Run");
    cmd.add_flag("--resume", flags.resume, "Continue from the last checkpoint in the output folder")->group("Run");
    for (const Key & k : keys()) {
        const std::string long_name = kebab(k.name);
        const std::string names     = k.short_flag ? std::string(k.short_flag) + "," + long_name : long_name;
        const std::string negated   = "--no-" + long_name.substr(2);
        const std::string name      = k.name;
        add_text_flag(cmd, names, negated, k.access.kind, k.help,
                      [&flags, name](const std::string & v) { flags.values.emplace_back(name, v); })
            ->group(k.group);
    }
}

void apply_flags(const TrainFlags & flags, TrainOptions & options) {
    for (const auto & [key, value] : flags.values) {
        const Key *       k    = find_key(key);
        const std::string flag = k ? flag_of(*k) : kebab(key);
        apply_setting(options, Setting{"", key, value, false, flag, flag});
    }
    options.resume = options.resume || flags.resume;
}

TrainOptions resolve_train_options(Method method, const TrainFlags & flags) {
    TrainOptions options = TrainOptions::defaults(method);
    if (!flags.config.empty()) {
        apply_recipe(flags.config, options);
    }
    apply_flags(flags, options);
    validate(options);
    return options;
}

// ---- Public: parallel ---------------------------------------------------------------------------

ParallelOptions parallel_defaults(Method preference_method) {
    if (preference_method == Method::sft) {
        throw InputError("the preference branch's method must be dpo or orpo, not sft");
    }
    ParallelOptions p;
    p.sft        = TrainOptions::defaults(Method::sft);
    p.preference = TrainOptions::defaults(preference_method);
    return p;
}

void apply_parallel_recipe(const std::string & path, ParallelOptions & options,
                           const std::vector<std::string> & own_sections) {
    const RecipeFile file = RecipeReader(path, true, own_sections).read();
    if (auto method = preference_method(file.settings); method && *method != options.preference.method) {
        options.preference = TrainOptions::defaults(*method);
    }
    apply_parallel_settings(options, file.settings);
    warn_ignored(path, file.ignored);
}

MergeOptions read_merge_options(const std::string & path, const YAML::Node & map) {
    ParallelOptions p;
    for (const Setting & s : RecipeReader(path, true).read_section_node(map, "merge").settings) {
        apply_parallel_setting(p, s);
    }
    return p.merge;
}

void add_parallel_flags(CLI::App & cmd, ParallelFlags & flags) {
    cmd.add_option("--config", flags.config, "YAML parallel recipe (flags override it)")->type_name("FILE");
    for (const ParallelFlag & f : parallel_flags()) {
        const std::string path = f.path;
        cmd.add_option(f.flag, f.help)
            ->type_name(type_name(f.kind))
            ->each([&flags, path](const std::string & v) { flags.values.emplace_back(path, v); })
            ->multi_option_policy(CLI::MultiOptionPolicy::Throw);
    }
    for (const MergeKey & k : merge_keys()) {
        if (std::string(k.name) == "enabled") {
            continue;  // --no-merge
        }
        const std::string path = std::string("merge.") + k.name;
        add_text_flag(cmd, kebab(std::string("merge_") + k.name), "--no-merge-" + std::string(k.name), k.kind, k.help,
                      [&flags, path](const std::string & v) { flags.values.emplace_back(path, v); })
            ->group("Merge");
    }
    cmd.add_flag("--no-merge", flags.no_merge, "Train both adapters but do not merge them");
    cmd.add_flag("--resume", flags.resume, "Continue both branches from their last checkpoints");
    cmd.add_option("--set", "Any recipe key: KEY=VALUE (both branches), sft.KEY=, preference.KEY=, merge.KEY=")
        ->type_name("PATH=VALUE")
        ->each([&flags](const std::string & v) {
            // Without '=' the path is left empty: resolve_parallel_options reports it.
            const size_t eq = v.find('=');
            eq == std::string::npos ? flags.values.emplace_back("", v)
                                    : flags.values.emplace_back(v.substr(0, eq), v.substr(eq + 1));
        })
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

ParallelOptions resolve_parallel_options(const ParallelFlags & flags) {
    RecipeFile file;
    if (!flags.config.empty()) {
        file = RecipeReader(flags.config, true).read();
    }
    std::vector<Setting> given;
    for (const auto & [path, value] : flags.values) {
        given.push_back(parallel_flag_setting(path, value));
    }
    std::optional<Method> method = preference_method(given);
    if (!method) {
        method = preference_method(file.settings);
    }
    ParallelOptions p = parallel_defaults(method.value_or(Method::dpo));
    apply_parallel_settings(p, file.settings);
    warn_ignored(flags.config, file.ignored);
    for (const Setting & s : given) {
        if (!(s.section == "preference" && s.key == "method")) {
            apply_parallel_setting(p, s);
        }
    }
    p.sft.resume        = p.sft.resume || flags.resume;
    p.preference.resume = p.preference.resume || flags.resume;
    p.merge_enabled     = p.merge_enabled && !flags.no_merge;
    finish_parallel(p);
    validate(p);
    return p;
}

void validate(const ParallelOptions & p) {
    if (p.output_dir.empty()) {
        throw InputError("output_dir (--out) is required");
    }
    // What the run writes beside its branches (whose outputs their own validation checks): the
    // merged model and the recipe. The folder itself may hold inputs (paft run's world).
    const std::vector<NamedPath> inputs = {{p.sft.model, "model_name_or_path"},
                                           {p.sft.train_data, "sft: train_data"},
                                           {p.preference.train_data, "preference: train_data"},
                                           {p.sft.tokenizer, "tokenizer"}};
    check_output_apart(p.output_dir + "/model", "the merged model (output_dir/model)", inputs);
    check_output_apart(p.output_dir + "/paft_recipe.yaml", "the recipe (output_dir/paft_recipe.yaml)", inputs);
    if (p.preference.method == Method::sft || p.sft.method != Method::sft) {
        throw InputError("the branches must be sft and dpo or orpo");
    }
    if (p.threads < 0 || p.sft_threads < 0 || p.preference_threads < 0) {
        throw InputError(fmt::format("threads (--threads, --sft-threads, --pref-threads) must be at least 0, got {}, "
                                     "{}, {}",
                                     p.threads, p.sft_threads, p.preference_threads));
    }
    if (p.threads > 0 && p.sft_threads + p.preference_threads > p.threads) {
        throw InputError(fmt::format("the branches' threads (sft {} + preference {}) exceed threads ({})",
                                     p.sft_threads, p.preference_threads, p.threads));
    }
    for (const auto * branch : {&p.sft, &p.preference}) {
        const char * name = branch == &p.sft ? "sft" : "preference";
        try {
            validate(*branch);
        } catch (const InputError & e) {
            throw InputError(fmt::format("{} branch: {}", name, e.what()));
        }
    }
    try {
        validate(p.merge, 2);
    } catch (const InputError & e) {
        throw InputError(std::string("merge: ") + e.what());
    }
}

std::string recipe_yaml(const ParallelOptions & p) {
    std::string out = "# paft parallel recipe: every option of the run (paft parallel --config FILE reads it)\n";
    out += fmt::format("output_dir: {}\nthreads: {}\n", yaml_scalar(p.output_dir), p.threads);
    out += fmt::format("branch_ranks: {}  # under mpirun: SFT:PREFERENCE ranks, or half\n",
                       p.sft_ranks > 0 ? fmt::format("\"{}:{}\"", p.sft_ranks, p.preference_ranks) : "half");
    // Keys both branches use and agree on are written once, at the top level.
    auto shared = [&p](const Key & k) {
        const std::string name = k.name;
        return k.scope == ALL && k.access.get(p.sft) == k.access.get(p.preference) && name != "output_dir" &&
               name != "threads";
    };
    out += "\n# Shared by both branches";
    write_keys(out, p.sft, "", [&](const Key & k) { return !shared(k); });
    for (const auto * branch : {&p.sft, &p.preference}) {
        const bool sft = branch == &p.sft;
        out += fmt::format("\n{}:\n", sft ? "sft" : "preference");
        if (!sft) {
            out += fmt::format("  method: {}\n", method_name(branch->method));
        }
        out += fmt::format("  output_dir: {}\n  threads: {}\n", yaml_scalar(branch->output_dir),
                           sft ? p.sft_threads : p.preference_threads);
        write_keys(out, *branch, "  ", [&](const Key & k) {
            return shared(k) || std::string(k.name) == "output_dir" || std::string(k.name) == "threads";
        });
    }
    out += "\nmerge:\n";
    for (const MergeKey & k : merge_keys()) {
        out += fmt::format("  {}: {}\n", k.name, yaml_value(k.kind, k.get(p)));
    }
    return out;
}

}  // namespace paft
