#include "model/lora.h"

#include "core/error.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "core/random.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tokenizer/regex.h"

#include <cblas.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <filesystem>
#include <set>
#include <sstream>

#include <unistd.h>

namespace paft {
namespace {

const char * const kTargetNames[TARGET_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};

bool is_attention(int target) {
    return target <= TARGET_O;
}

// in and out features of each target's linear layer: q [Hq*D, C], k/v [Hkv*D, C], o [C, Hq*D],
// gate/up [F, C], down [C, F].
void target_features(const ModelConfig & m, std::array<int, TARGET_COUNT> * in, std::array<int, TARGET_COUNT> * out) {
    const int C = m.hidden_size, F = m.intermediate_size;
    *in  = {C, C, C, m.q_dim(), C, C, F};
    *out = {m.q_dim(), m.kv_dim(), m.kv_dim(), C, F, F, C};
}

float number_field(const nlohmann::json & j, const char * key, float fallback, const std::string & path) {
    if (!j.contains(key) || j[key].is_null()) {
        return fallback;
    }
    // A float field: beyond f32's range (lora_alpha: 1e308) it would become Inf and every score NaN.
    if (!j[key].is_number() || !(std::abs(j[key].get<double>()) <= std::numeric_limits<float>::max())) {
        throw InputError(fmt::format("{}: field '{}' must be a finite float32 number, got {}", path, key,
                                     json_snippet(j[key])));
    }
    return j[key].get<float>();
}

// target_modules as PEFT reads it: "all-linear"; a string is a regular expression that must
// match a module's whole path; a list names modules by their last part ("q_proj") or a longer
// suffix ("self_attn.q_proj"). Only targets chosen in every layer are supported.
// A regular expression is PCRE2's (Python re's syntax for what PEFT configs use) under its match
// limit: std::regex backtracks without bound (and recurses per character).
std::array<bool, TARGET_COUNT> peft_targets(const nlohmann::json & spec, int layers, const std::string & path) {
    std::array<bool, TARGET_COUNT> targets{};
    std::unique_ptr<tok::Regex>    pattern;
    if (spec.is_string() && spec != "all-linear") {
        std::string error;
        pattern = tok::Regex::compile(spec.get<std::string>(), error);
        if (!pattern) {
            throw InputError(fmt::format("{}: target_modules is not a valid regular expression: {}", path, error));
        }
    }
    auto matches = [&](int layer, int t) {
        const std::string module = lora_module_path(layer, t);
        if (spec.is_string()) {
            try {
                return !pattern || pattern->full_match(module);
            } catch (const RuntimeFailure & e) {
                throw InputError(fmt::format("{}: target_modules: {}", path, e.what()));
            }
        }
        for (const auto & entry : spec) {
            const std::string name = entry.is_string() ? entry.get<std::string>() : "";
            if (!name.empty() && (module == name || module.ends_with("." + name))) {
                return true;
            }
        }
        return false;
    };
    if (!spec.is_string() && !spec.is_array()) {
        throw InputError(fmt::format("{}: target_modules must be a list of module names or a regular expression",
                                     path));
    }
    // Every name of a list must name a module: PEFT would skip a misspelt one silently, and the
    // adapter would then lack what its author meant it to have.
    if (spec.is_array()) {
        for (const auto & entry : spec) {
            const std::string name  = entry.is_string() ? entry.get<std::string>() : "";
            bool              known = false;
            for (int t = 0; t < TARGET_COUNT && !known; t++) {
                const std::string module = lora_module_path(0, t);
                known = !name.empty() && (module == name || module.ends_with("." + name));
            }
            if (!known) {
                throw InputError(fmt::format("{}: target_modules: {} names no module of the model (q_proj, k_proj, "
                                             "v_proj, o_proj, gate_proj, up_proj, down_proj)",
                                             path, json_snippet(entry)));
            }
        }
    }
    for (int t = 0; t < TARGET_COUNT; t++) {
        int chosen = 0;
        for (int l = 0; l < layers; l++) {
            chosen += matches(l, t) ? 1 : 0;
        }
        if (chosen != 0 && chosen != layers) {
            throw InputError(fmt::format("{}: target_modules selects {} in only some layers, which is not "
                                         "supported",
                                         path, kTargetNames[t]));
        }
        targets[t] = chosen == layers;
    }
    if (std::none_of(targets.begin(), targets.end(), [](bool b) { return b; })) {
        throw InputError(fmt::format("{}: target_modules selects none of q_proj, k_proj, v_proj, o_proj, gate_proj, "
                                     "up_proj, down_proj",
                                     path));
    }
    return targets;
}

std::string peft_key_for(int layer, int target, char which) {
    return fmt::format("base_model.model.{}.lora_{}.weight", lora_module_path(layer, target), which);
}

}  // namespace

std::string lora_module_path(int layer, int target) {
    return fmt::format("model.layers.{}.{}.{}", layer, is_attention(target) ? "self_attn" : "mlp", kTargetNames[target]);
}

const char * lora_target_name(int target) {
    return kTargetNames[target];
}

int lora_target_from_name(const std::string & name) {
    for (int t = 0; t < TARGET_COUNT; t++) {
        if (name == kTargetNames[t]) {
            return t;
        }
    }
    return -1;
}

float LoraConfig::scale() const {
    return rslora ? alpha / std::sqrt((float) r) : alpha / (float) r;
}

std::array<bool, TARGET_COUNT> parse_lora_targets(const std::string & list) {
    std::array<bool, TARGET_COUNT> targets{};
    std::stringstream              ss(list);
    std::string                    item;
    while (std::getline(ss, item, ',')) {
        if (item == "all-linear") {
            targets.fill(true);
            continue;
        }
        int t = lora_target_from_name(item);
        if (t < 0) {
            throw InputError(fmt::format("unknown LoRA target module '{}' (known: q_proj, k_proj, v_proj, o_proj, "
                                         "gate_proj, up_proj, down_proj, all-linear)",
                                         item));
        }
        targets[t] = true;
    }
    return targets;
}

LoraAdapter::LoraAdapter(const ModelConfig & m, const LoraConfig & config)
    : config_(config), layers_(m.num_layers), offset_a_(m.num_layers), offset_b_(m.num_layers) {
    if (config.r <= 0) {
        throw InputError(fmt::format("LoRA rank r must be positive, got {}", config.r));
    }
    target_features(m, &in_, &out_);
    size_t size = 0;
    for (int l = 0; l < layers_; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            offset_a_[l][t] = offset_b_[l][t] = SIZE_MAX;
            if (config.targets[t]) {
                offset_a_[l][t] = size;
                size += (size_t) config.r * in_[t];
                offset_b_[l][t] = size;
                size += (size_t) out_[t] * config.r;
            }
        }
    }
    // Refused before allocating (Linux's overcommit would let the zero fill get the process killed):
    // training holds the weights, their gradients and Adam's two moments, all f32.
    const double need = 4.0 * sizeof(float) * (double) size;
    const double have = (double) sysconf(_SC_PHYS_PAGES) * (double) sysconf(_SC_PAGESIZE);
    if (have > 0 && need > have) {
        throw InputError(fmt::format("lora_r {}: an adapter of {} parameters needs {:.1f} GB to train (weights, "
                                     "gradients and Adam's two moments, f32); this machine has {:.1f} GB",
                                     config.r, size, need / 1e9, have / 1e9));
    }
    params_.assign(size, 0.0f);
    grads_.assign(size, 0.0f);
}

void LoraAdapter::init_peft(uint64_t seed) {
    Random rng(seed);
    for (int l = 0; l < layers_; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!has(l, t)) {
                continue;
            }
            float   bound = 1.0f / std::sqrt((float) in_[t]);
            float * a     = A(l, t);
            for (size_t i = 0; i < (size_t) config_.r * in_[t]; i++) {
                a[i] = (2.0f * rng.uniform() - 1.0f) * bound;
            }
            std::fill(B(l, t), B(l, t) + (size_t) out_[t] * config_.r, 0.0f);
        }
    }
}

std::string LoraAdapter::peft_key(int layer, int target, char which) const {
    return peft_key_for(layer, target, which);
}

void LoraAdapter::zero_grads() {
    std::fill(grads_.begin(), grads_.end(), 0.0f);
}

LoraConfig parse_adapter_config(const std::string & text, const std::string & config_path, int num_layers) {
    using json = nlohmann::json;
    json j;
    try {
        check_json_depth(text, config_path);
        j = json::parse(text);
    } catch (const json::exception & e) {
        throw InputError(fmt::format("{}: not valid JSON: {}", config_path, e.what()));
    }
    if (!j.is_object()) {
        throw InputError(fmt::format("{}: must be a JSON object, got {}", config_path, json_snippet(j)));
    }
    LoraConfig c;
    try {
        if (j.contains("task_type") && !j["task_type"].is_null() && j["task_type"] != "CAUSAL_LM") {
            throw InputError(fmt::format("{}: task_type {} is not supported (only CAUSAL_LM: paft's adapters are "
                                         "for causal language models)",
                                         config_path, json_snippet(j["task_type"])));
        }
        if (j.contains("use_rslora") && !j["use_rslora"].is_null() && !j["use_rslora"].is_boolean()) {
            throw InputError(fmt::format("{}: field 'use_rslora' must be true or false, got {}", config_path,
                                         json_snippet(j["use_rslora"])));
        }
        if (j.contains("peft_type") && !j["peft_type"].is_null() && j["peft_type"] != "LORA") {
            throw InputError(fmt::format("{}: peft_type {} is not supported (only LORA)", config_path,
                                         json_snippet(j["peft_type"])));
        }
        for (const char * unsupported : {"use_dora", "fan_in_fan_out", "lora_bias"}) {
            if (j.contains(unsupported) && j[unsupported].is_boolean() && j[unsupported].get<bool>()) {
                throw InputError(fmt::format("{}: {} = true is not supported", config_path, unsupported));
            }
        }
        for (const char * unsupported : {"layers_to_transform", "layers_pattern", "modules_to_save"}) {
            if (j.contains(unsupported) && !j[unsupported].is_null() &&
                !(j[unsupported].is_array() && j[unsupported].empty())) {
                throw InputError(fmt::format("{}: {} is not supported (adapters apply to every layer)", config_path,
                                             unsupported));
            }
        }
        if (j.contains("bias") && j["bias"] != "none") {
            throw InputError(fmt::format("{}: bias = {} is not supported (only \"none\")", config_path,
                                         json_snippet(j["bias"])));
        }
        for (const char * unsupported : {"rank_pattern", "alpha_pattern"}) {
            if (j.contains(unsupported) && j[unsupported].is_object() && !j[unsupported].empty()) {
                throw InputError(fmt::format("{}: a non-empty {} is not supported", config_path, unsupported));
            }
        }
        if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() <= 0 ||
            j["r"].get<int64_t>() > 65536) {
            throw InputError(fmt::format("{}: field 'r' must be a positive integer", config_path));
        }
        c.r = j["r"].get<int>();
        // PEFT's defaults: lora_alpha 8, lora_dropout 0.
        c.alpha   = number_field(j, "lora_alpha", 8.0f, config_path);
        c.dropout = number_field(j, "lora_dropout", 0.0f, config_path);
        if (!(c.dropout >= 0.0f && c.dropout < 1.0f)) {
            throw InputError(fmt::format("{}: lora_dropout must be in [0, 1)", config_path));
        }
        c.rslora  = j.contains("use_rslora") && j["use_rslora"].is_boolean() && j["use_rslora"].get<bool>();
        c.targets = peft_targets(j.contains("target_modules") ? j["target_modules"] : json(), num_layers,
                                 config_path);
    } catch (const json::exception & e) {
        throw InputError(fmt::format("{}: bad field type: {}", config_path, e.what()));
    }
    return c;
}

LoraAdapter LoraAdapter::load(const std::string & dir, const ModelConfig & model) {
    const std::string config_path = dir + "/adapter_config.json";
    const LoraConfig  c           = parse_adapter_config(read_file(config_path), config_path, model.num_layers);
    // Shapes are checked against the base model before anything is allocated.
    TensorStore                   store = TensorStore::open_dir(dir, "adapter_model");
    std::array<int, TARGET_COUNT> in, out;
    target_features(model, &in, &out);
    std::set<std::string> expected;
    for (int l = 0; l < model.num_layers; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (c.targets[t]) {
                store.expect_shape(peft_key_for(l, t, 'A'), {c.r, in[t]});
                store.expect_shape(peft_key_for(l, t, 'B'), {out[t], c.r});
                expected.insert(peft_key_for(l, t, 'A'));
                expected.insert(peft_key_for(l, t, 'B'));
            }
        }
    }
    for (const std::string & name : store.names()) {
        if (!expected.count(name)) {
            throw InputError(fmt::format("{}: unexpected tensor '{}' (not a LoRA A/B of a targeted module)", dir, name));
        }
    }
    LoraAdapter adapter(model, c);
    for (int l = 0; l < model.num_layers; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (adapter.has(l, t)) {
                store.read_f32(peft_key_for(l, t, 'A'), {c.r, in[t]}, adapter.A(l, t));
                store.read_f32(peft_key_for(l, t, 'B'), {out[t], c.r}, adapter.B(l, t));
            }
        }
    }
    return adapter;
}

void LoraAdapter::save(const std::string & dir, const std::string & base_model_path) const {
    using json = nlohmann::json;
    make_dirs(dir);
    std::vector<TensorToWrite> tensors;
    json                       targets = json::array();
    for (int t = 0; t < TARGET_COUNT; t++) {
        if (config_.targets[t]) {
            targets.push_back(kTargetNames[t]);
        }
    }
    for (int l = 0; l < layers_; l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (has(l, t)) {
                tensors.push_back({peft_key(l, t, 'A'), {config_.r, in_[t]}, A(l, t), DType::F32});
                tensors.push_back({peft_key(l, t, 'B'), {out_[t], config_.r}, B(l, t), DType::F32});
            }
        }
    }
    write_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
    json j = {{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"base_model_name_or_path", base_model_path},
              {"r", config_.r},
              {"lora_alpha", config_.alpha},
              {"lora_dropout", config_.dropout},
              {"use_rslora", config_.rslora},
              {"use_dora", false},
              {"target_modules", targets},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"init_lora_weights", true},
              {"inference_mode", true},
              {"modules_to_save", nullptr},
              {"rank_pattern", json::object()},
              {"alpha_pattern", json::object()}};
    write_file_atomic(dir + "/adapter_config.json", j.dump(2) + "\n");
}

void add_lora_delta(const LoraAdapter & a, int layer, int target, float weight, float beta, float * W) {
    add_lora_delta_rows(a, layer, target, weight, beta, 0, a.out_features(target), W);
}

void add_lora_delta_rows(const LoraAdapter & a, int layer, int target, float weight, float beta, int64_t row0,
                         int64_t rows, float * W_rows) {
    const int in = a.in_features(target), r = a.config().r;
    // B's rows [row0, row0 + rows) are contiguous: [rows, r] x A [r, in].
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, in, r, weight * a.config().scale(),
                a.B(layer, target) + row0 * r, r, a.A(layer, target), in, beta, W_rows, in);
}

void apply_lora(Backend & backend, const LoraAdapter & a, int layer, int target, const float * x, int ldx, int M,
                float * y, int ldy, std::vector<float> & h) {
    const int r = a.config().r, in = a.in_features(target), out = a.out_features(target);
    h.resize((size_t) M * r);
    // h [M, r] = x Aᵀ;  y += s h Bᵀ
    backend.gemm(false, true, M, r, in, 1.0f, x, ldx, a.A(layer, target), in, 0.0f, h.data(), r);
    backend.gemm(false, true, M, out, r, a.config().scale(), h.data(), r, a.B(layer, target), r, 1.0f, y, ldy);
}

void fold_lora_adapter(Model & base, const LoraAdapter & adapter, double weight) {
    const ModelConfig & c = base.config();
    if (adapter.layers() != c.num_layers) {
        throw InputError(fmt::format("adapter: it has {} layers, the base model {}", adapter.layers(), c.num_layers));
    }
    if (!std::isfinite(weight)) {
        throw InputError(fmt::format("weight: {} is not a finite number", weight));
    }
    std::vector<std::pair<int, int>> modules;  // (layer, target)
    for (int l = 0; l < adapter.layers(); l++) {
        for (int t = 0; t < TARGET_COUNT; t++) {
            if (!adapter.has(l, t)) continue;
            const LayerWeights & lw       = base.weights().layers[l];
            const Weight *       module[] = {&lw.q, &lw.k, &lw.v, &lw.o, &lw.gate, &lw.up, &lw.down};
            if (module[t]->rows != adapter.out_features(t) || module[t]->cols != adapter.in_features(t)) {
                throw InputError(fmt::format("adapter: its {} is [{}, {}], the base model's [{}, {}]",
                                             lora_target_name(t), adapter.out_features(t), adapter.in_features(t),
                                             module[t]->rows, module[t]->cols));
            }
            modules.push_back({l, t});
        }
    }
    auto fold = [&](int l, int t) {
        base.edit_matrix(lora_module_path(l, t) + ".weight",
                         [&](float * W) { add_lora_delta(adapter, l, t, (float) weight, 1.0f, W); });
    };
    if (base.trainable()) {
        // Each module's weight is a separate block of the one buffer: one thread per module.
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < modules.size(); i++) fold(modules[i].first, modules[i].second);
    } else {
        // A frozen model's modules get buffers of their own one at a time (edit_matrix is serial;
        // its conversions use the threads).
        for (const auto & [l, t] : modules) fold(l, t);
    }
}

}  // namespace paft
