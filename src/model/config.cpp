#include "model/config.h"

#include "core/error.h"
#include "io/json_depth.h"
#include "io/json_snippet.h"
#include "io/fs.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <climits>
#include <cmath>
#include <limits>

namespace paft {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string & source, const std::string & what) {
    throw InputError(fmt::format("{}: {}", source, what));
}

int get_int(const json & j, const char * key, const std::string & source, int fallback, bool required) {
    if (!j.contains(key) || j[key].is_null()) {
        if (required) {
            fail(source, fmt::format("missing field '{}'", key));
        }
        return fallback;
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0 || j[key].get<int64_t>() > (1 << 30)) {
        fail(source, fmt::format("field '{}' must be a non-negative integer, got {}", key, json_snippet(j[key])));
    }
    return j[key].get<int>();
}

float get_float(const json & j, const char * key, const std::string & source, float fallback) {
    if (!j.contains(key) || j[key].is_null()) {
        return fallback;
    }
    if (!j[key].is_number() || !(std::abs(j[key].get<double>()) <= std::numeric_limits<float>::max())) {
        fail(source, fmt::format("field '{}' must be a finite float32 number, got {}", key, json_snippet(j[key])));
    }
    return j[key].get<float>();
}

bool get_bool(const json & j, const char * key, const std::string & source, bool fallback) {
    if (!j.contains(key) || j[key].is_null()) {
        return fallback;
    }
    if (!j[key].is_boolean()) {
        fail(source, fmt::format("field '{}' must be true or false, got {}", key, json_snippet(j[key])));
    }
    return j[key].get<bool>();
}

// eos_token_id may be an int or a list (Llama 3); the first entry is kept.
int get_token_id(const json & j, const char * key) {
    if (!j.contains(key)) {
        return -1;
    }
    const json & v = j[key];
    if (v.is_number_integer()) {
        return v.get<int>();
    }
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
        return v[0].get<int>();
    }
    return -1;
}

Architecture parse_architecture(const json & j, const std::string & source, std::string * name) {
    if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].size() != 1 ||
        !j["architectures"][0].is_string()) {
        fail(source, "field 'architectures' must be a list with one name, e.g. [\"LlamaForCausalLM\"]");
    }
    *name = j["architectures"][0].get<std::string>();
    if (*name == "LlamaForCausalLM") {
        return Architecture::Llama;
    }
    if (*name == "MistralForCausalLM") {
        return Architecture::Mistral;
    }
    if (*name == "Qwen2ForCausalLM") {
        return Architecture::Qwen2;
    }
    fail(source, fmt::format("unsupported architecture '{}' (supported: LlamaForCausalLM, MistralForCausalLM, "
                             "Qwen2ForCausalLM)",
                             *name));
}

RopeScaling parse_rope_scaling(const json & j, const std::string & source) {
    RopeScaling r;
    if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) {
        return r;
    }
    const json & s = j["rope_scaling"];
    if (!s.is_object()) {
        fail(source, "field 'rope_scaling' must be an object or null");
    }
    std::string type = s.contains("rope_type") ? s["rope_type"].get<std::string>()
                       : s.contains("type")    ? s["type"].get<std::string>()
                                               : "";
    if (type == "default") {
        return r;
    }
    if (type != "llama3") {
        fail(source, fmt::format("unsupported rope_scaling type '{}' (supported: llama3)", type));
    }
    // transformers requires all four for llama3 (_validate_llama3_parameters).
    for (const char * key : {"factor", "low_freq_factor", "high_freq_factor"}) {
        if (!s.contains(key) || s[key].is_null()) {
            fail(source, fmt::format("rope_scaling of type llama3: missing field '{}'", key));
        }
    }
    r.llama3                           = true;
    r.factor                           = get_float(s, "factor", source + " rope_scaling", 8.0f);
    r.low_freq_factor                  = get_float(s, "low_freq_factor", source + " rope_scaling", 1.0f);
    r.high_freq_factor                 = get_float(s, "high_freq_factor", source + " rope_scaling", 4.0f);
    r.original_max_position_embeddings =
        get_int(s, "original_max_position_embeddings", source + " rope_scaling", 8192, true);
    if (!(r.high_freq_factor > r.low_freq_factor) || r.factor <= 0.0f) {
        fail(source, "rope_scaling: need factor > 0 and high_freq_factor > low_freq_factor");
    }
    return r;
}

void check_sizes(const ModelConfig & c, const std::string & source) {
    if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
        c.vocab_size <= 0) {
        fail(source, "hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and vocab_size must "
                     "be positive");
    }
    if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0) {
        fail(source, fmt::format("num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                                 c.num_heads, c.num_kv_heads));
    }
    if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
        fail(source, fmt::format("head_dim must be a positive even number, got {}", c.head_dim));
    }
    if (c.max_position_embeddings <= 0) {
        fail(source, fmt::format("max_position_embeddings must be positive, got {}", c.max_position_embeddings));
    }
    // Matrix sides are ints in the kernels: reject products that would overflow them.
    const int64_t D = c.head_dim, limit = INT32_MAX;
    const int64_t sides[] = {(c.num_heads + 2 * (int64_t) c.num_kv_heads) * D, 2 * (int64_t) c.intermediate_size,
                             (int64_t) c.vocab_size * c.hidden_size / limit};
    if (sides[0] > limit || sides[1] > limit || sides[2] > 0) {
        fail(source, "the model's sizes (heads x head_dim, intermediate_size, vocab_size x hidden_size) are too "
                     "large");
    }
    if (!(c.rms_norm_eps >= 0.0f) || !(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta) ||
        !std::isfinite(c.rope_scaling.factor)) {
        fail(source, "rms_norm_eps must be >= 0, rope_theta and rope_scaling.factor finite and > 0");
    }
}

}  // namespace

ModelConfig parse_model_config(const std::string & text, const std::string & source) {
    json j;
    try {
        check_json_depth(text, source);
        j = json::parse(text);
    } catch (const json::exception & e) {
        fail(source, fmt::format("not valid JSON: {}", e.what()));
    }
    if (!j.is_object()) {
        fail(source, "expected a JSON object");
    }
    ModelConfig c;
    try {
        c.architecture = parse_architecture(j, source, &c.architecture_name);
        if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
            fail(source, fmt::format("unsupported hidden_act {} (supported: \"silu\")", json_snippet(j["hidden_act"])));
        }
        c.hidden_size       = get_int(j, "hidden_size", source, 0, true);
        c.intermediate_size = get_int(j, "intermediate_size", source, 0, true);
        c.num_layers        = get_int(j, "num_hidden_layers", source, 0, true);
        c.num_heads         = get_int(j, "num_attention_heads", source, 0, true);
        // transformers' defaults when absent: Llama: the query heads; Mistral 8; Qwen2 32.
        int kv_default      = c.architecture == Architecture::Mistral ? 8
                              : c.architecture == Architecture::Qwen2 ? 32
                                                                      : c.num_heads;
        c.num_kv_heads      = get_int(j, "num_key_value_heads", source, kv_default, false);
        c.vocab_size        = get_int(j, "vocab_size", source, 0, true);
        if ((!j.contains("head_dim") || j["head_dim"].is_null()) && c.num_heads > 0 && c.hidden_size % c.num_heads != 0) {
            fail(source, fmt::format("hidden_size ({}) is not a multiple of num_attention_heads ({}), and no head_dim "
                                     "is given",
                                     c.hidden_size, c.num_heads));
        }
        c.head_dim          = get_int(j, "head_dim", source, c.num_heads ? c.hidden_size / c.num_heads : 0, false);
        c.max_position_embeddings = get_int(j, "max_position_embeddings", source, 2048, false);
        c.rms_norm_eps      = get_float(j, "rms_norm_eps", source, 1e-6f);
        c.rope_theta        = get_float(j, "rope_theta", source, 10000.0f);
        c.rope_scaling      = parse_rope_scaling(j, source);
        c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", source, false);
        c.bos_token_id      = get_token_id(j, "bos_token_id");
        c.eos_token_id      = get_token_id(j, "eos_token_id");
        if (j.contains("torch_dtype") && !j["torch_dtype"].is_null()) {
            const json & t = j["torch_dtype"];
            if (t != "float32" && t != "bfloat16" && t != "float16") {
                fail(source, fmt::format("torch_dtype {} is not one of float32, bfloat16, float16", json_snippet(t)));
            }
            c.torch_dtype = t.get<std::string>();
        }
        // transformers picks the config class by model_type: it must be the architecture's.
        static const char * model_types[] = {"llama", "mistral", "qwen2"};
        if (j.contains("model_type") && j["model_type"] != model_types[(int) c.architecture]) {
            fail(source, fmt::format("model_type {} does not fit architecture {} (expected \"{}\")",
                                     json_snippet(j["model_type"]), c.architecture_name,
                                     model_types[(int) c.architecture]));
        }
        for (const auto & [key, id] : {std::pair<const char *, int>{"bos_token_id", c.bos_token_id},
                                       std::pair<const char *, int>{"eos_token_id", c.eos_token_id}}) {
            if (id >= c.vocab_size && c.vocab_size > 0) {
                fail(source, fmt::format("{} {} is outside the vocabulary (vocab_size {})", key, id, c.vocab_size));
            }
        }
        switch (c.architecture) {
        case Architecture::Llama:
            c.attention_bias = get_bool(j, "attention_bias", source, false);
            c.o_proj_bias    = c.attention_bias;
            c.mlp_bias       = get_bool(j, "mlp_bias", source, false);
            break;
        case Architecture::Mistral:
            // transformers' MistralConfig defaults the window to 4096 when the field is absent; null means none.
            c.sliding_window = j.contains("sliding_window") ? get_int(j, "sliding_window", source, 0, false) : 4096;
            break;
        case Architecture::Qwen2:
            c.attention_bias = true;
            if (get_bool(j, "use_sliding_window", source, false)) {
                fail(source, "use_sliding_window: true is not supported for Qwen2");
            }
            break;
        }
    } catch (const json::exception & e) {
        fail(source, fmt::format("unexpected field type: {}", e.what()));
    }
    check_sizes(c, source);
    return c;
}

ModelConfig load_model_config(const std::string & model_dir) {
    std::string path = model_dir + "/config.json";
    return parse_model_config(read_file(path), path);
}

std::string model_config_to_json(const ModelConfig & c) {
    static const char * model_types[] = {"llama", "mistral", "qwen2"};
    json j;
    j["architectures"]           = {c.architecture_name};
    j["model_type"]              = model_types[(int) c.architecture];
    j["hidden_size"]             = c.hidden_size;
    j["intermediate_size"]       = c.intermediate_size;
    j["num_hidden_layers"]       = c.num_layers;
    j["num_attention_heads"]     = c.num_heads;
    j["num_key_value_heads"]     = c.num_kv_heads;
    j["head_dim"]                = c.head_dim;
    j["vocab_size"]              = c.vocab_size;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["rms_norm_eps"]            = c.rms_norm_eps;
    j["rope_theta"]              = c.rope_theta;
    j["hidden_act"]              = "silu";
    j["tie_word_embeddings"]     = c.tie_word_embeddings;
    j["torch_dtype"]             = c.torch_dtype;
    if (c.bos_token_id >= 0) {
        j["bos_token_id"] = c.bos_token_id;
    }
    if (c.eos_token_id >= 0) {
        j["eos_token_id"] = c.eos_token_id;
    }
    if (c.rope_scaling.llama3) {
        j["rope_scaling"] = {{"rope_type", "llama3"},
                             {"factor", c.rope_scaling.factor},
                             {"low_freq_factor", c.rope_scaling.low_freq_factor},
                             {"high_freq_factor", c.rope_scaling.high_freq_factor},
                             {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
    } else {
        j["rope_scaling"] = nullptr;
    }
    if (c.architecture == Architecture::Llama) {
        j["attention_bias"] = c.attention_bias;
        j["mlp_bias"]       = c.mlp_bias;
    }
    if (c.architecture == Architecture::Mistral) {
        j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
    }
    return j.dump(2) + "\n";
}

}  // namespace paft
