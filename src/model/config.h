// The model's hyper-parameters, read from a Hugging Face config.json.
#pragma once

#include <string>

namespace paft {

enum class Architecture { Llama, Mistral, Qwen2 };

struct RopeScaling {
    bool  llama3                           = false;  // rope_scaling.rope_type == "llama3"
    float factor                           = 1.0f;
    float low_freq_factor                  = 1.0f;
    float high_freq_factor                 = 4.0f;
    int   original_max_position_embeddings = 8192;
};

struct ModelConfig {
    Architecture architecture      = Architecture::Llama;
    std::string  architecture_name = "LlamaForCausalLM";  // as in config.json "architectures"
    int          hidden_size       = 0;                   // C
    int          intermediate_size = 0;                   // F
    int          num_layers        = 0;                   // L
    int          num_heads         = 0;                   // Hq
    int          num_kv_heads      = 0;                   // Hkv
    int          head_dim          = 0;                   // D
    int          vocab_size        = 0;                   // V
    int          max_position_embeddings = 2048;
    float        rms_norm_eps      = 1e-6f;
    float        rope_theta        = 10000.0f;
    RopeScaling  rope_scaling;
    bool         tie_word_embeddings = false;
    bool         attention_bias      = false;  // bias on q, k, v
    bool         o_proj_bias         = false;  // Llama's attention_bias also covers o_proj; Qwen2's does not
    bool         mlp_bias            = false;  // bias on gate, up, down
    int          sliding_window      = 0;      // 0: full causal attention
    int          bos_token_id        = -1;
    int          eos_token_id        = -1;
    std::string  torch_dtype         = "float32";

    int q_dim() const { return num_heads * head_dim; }       // Hq*D
    int kv_dim() const { return num_kv_heads * head_dim; }   // Hkv*D
    int qkv_dim() const { return q_dim() + 2 * kv_dim(); }  // row stride S of the packed q,k,v
};

// Parses config.json text; `source` names the file in error messages. An unsupported
// architecture, activation, rope scaling or inconsistent size is an InputError naming the field.
ModelConfig parse_model_config(const std::string & json_text, const std::string & source);
ModelConfig load_model_config(const std::string & model_dir);

// The config.json text Hugging Face would write for this configuration.
std::string model_config_to_json(const ModelConfig & config);

}  // namespace paft
