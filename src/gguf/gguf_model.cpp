#include "gguf/gguf_model.h"

#include "core/error.h"
#include "model/lora.h"
#include "model/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

namespace paft {

namespace {

struct ExportTypeInfo {
    ExportType  type;
    const char * name;
    uint32_t    file_type;  // llama_ftype
};
// llama_ftype numbers: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15,
// MOSTLY_BF16 32.
constexpr ExportTypeInfo kExportTypes[] = {
    {ExportType::F32, "f32", 0},   {ExportType::F16, "f16", 1},   {ExportType::BF16, "bf16", 32},
    {ExportType::Q8_0, "q8_0", 7}, {ExportType::Q4_0, "q4_0", 2}, {ExportType::Q4_K_M, "q4_k_m", 15},
};

const ExportTypeInfo & info_of(ExportType type) {
    for (const ExportTypeInfo & i : kExportTypes) {
        if (i.type == type) return i;
    }
    throw std::logic_error("unknown export type");
}

// A decoder layer's tensors: Hugging Face's name after "model.layers.N.", llama.cpp's after
// "blk.N.", the LoRA target of a linear weight, and whether the rows are q's or k's heads.
struct LayerTensorName {
    const char * hf;
    const char * gguf;
    int          target;
    char         rope;  // 'q', 'k' or 0
};
constexpr LayerTensorName kLayerTensors[] = {
    {"input_layernorm.weight", "attn_norm.weight", -1, 0},
    {"self_attn.q_proj.weight", "attn_q.weight", TARGET_Q, 'q'},
    {"self_attn.k_proj.weight", "attn_k.weight", TARGET_K, 'k'},
    {"self_attn.v_proj.weight", "attn_v.weight", TARGET_V, 0},
    {"self_attn.q_proj.bias", "attn_q.bias", -1, 'q'},
    {"self_attn.k_proj.bias", "attn_k.bias", -1, 'k'},
    {"self_attn.v_proj.bias", "attn_v.bias", -1, 0},
    {"self_attn.o_proj.weight", "attn_output.weight", TARGET_O, 0},
    {"self_attn.o_proj.bias", "attn_output.bias", -1, 0},
    {"post_attention_layernorm.weight", "ffn_norm.weight", -1, 0},
    {"mlp.gate_proj.weight", "ffn_gate.weight", TARGET_GATE, 0},
    {"mlp.up_proj.weight", "ffn_up.weight", TARGET_UP, 0},
    {"mlp.gate_proj.bias", "ffn_gate.bias", -1, 0},
    {"mlp.up_proj.bias", "ffn_up.bias", -1, 0},
    {"mlp.down_proj.weight", "ffn_down.weight", TARGET_DOWN, 0},
    {"mlp.down_proj.bias", "ffn_down.bias", -1, 0},
};
// Outside the layers.
constexpr std::pair<const char *, const char *> kGlobalTensors[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Rows [heads, 2, D/2] <-> [heads, D/2, 2] (each row `row_length` floats).
void reorder_rope_rows(float * rows, int heads, int head_dim, int64_t row_length, bool to_gguf) {
    const int          half = head_dim / 2;
    std::vector<float> head((size_t) head_dim * row_length);
    for (int h = 0; h < heads; h++) {
        float * base = rows + (size_t) h * head_dim * row_length;
        std::memcpy(head.data(), base, head.size() * sizeof(float));
        for (int i = 0; i < half; i++) {
            for (int j = 0; j < 2; j++) {
                const int hf = j * half + i, gg = 2 * i + j;
                const int dst = to_gguf ? gg : hf, src = to_gguf ? hf : gg;
                std::memcpy(base + (size_t) dst * row_length, head.data() + (size_t) src * row_length,
                            row_length * sizeof(float));
            }
        }
    }
}

}  // namespace

std::optional<ExportType> parse_export_type(const std::string & name) {
    std::string lower;
    for (char c : name) lower += (char) std::tolower((unsigned char) c);
    for (const ExportTypeInfo & i : kExportTypes) {
        if (lower == i.name) return i.type;
    }
    return std::nullopt;
}

const char * export_type_name(ExportType type) { return info_of(type).name; }
uint32_t     llama_file_type(ExportType type) { return info_of(type).file_type; }

std::string export_type_list() {
    std::string out;
    for (const ExportTypeInfo & i : kExportTypes) out += (out.empty() ? "" : ", ") + std::string(i.name);
    return out;
}

const char * gguf_architecture(const ModelConfig & config) {
    return config.architecture == Architecture::Qwen2 ? "qwen2" : "llama";
}

int gguf_context_length(const ModelConfig & c) {
    return c.sliding_window > 0 ? std::min(c.sliding_window, c.max_position_embeddings) : c.max_position_embeddings;
}

bool gguf_permutes_qk(const ModelConfig & config) { return config.architecture != Architecture::Qwen2; }

void permute_rope_rows(float * rows, int heads, int head_dim, int64_t row_length) {
    reorder_rope_rows(rows, heads, head_dim, row_length, true);
}
void unpermute_rope_rows(float * rows, int heads, int head_dim, int64_t row_length) {
    reorder_rope_rows(rows, heads, head_dim, row_length, false);
}

void write_model_metadata(GgufWriter & w, const ModelConfig & c, const std::string & name, ExportType type) {
    const std::string arch = gguf_architecture(c);
    // What llama.cpp's graphs for these architectures have no place for.
    if (c.architecture == Architecture::Qwen2 && c.o_proj_bias) {
        throw InputError("config.json: a Qwen2 o_proj bias cannot be represented in llama.cpp's qwen2 architecture");
    }
    if (c.architecture == Architecture::Qwen2 && c.mlp_bias) {
        throw InputError("config.json: Qwen2 MLP biases cannot be represented in llama.cpp's qwen2 architecture");
    }
    w.set_string("general.architecture", arch);
    w.set_string("general.type", "model");
    w.set_string("general.name", name);
    w.set_u32("general.file_type", llama_file_type(type));
    if (type == ExportType::Q8_0 || type == ExportType::Q4_0 || type == ExportType::Q4_K_M) {
        w.set_u32("general.quantization_version", 2);  // ggml's current block layouts
    }
    // llama.cpp's llama graph has no sliding window (it attends to the whole context); within the
    // window's length the two attentions are the same, so the file's training context is the window.
    w.set_u32(arch + ".context_length", (uint32_t) gguf_context_length(c));
    w.set_u32(arch + ".embedding_length", (uint32_t) c.hidden_size);
    w.set_u32(arch + ".block_count", (uint32_t) c.num_layers);
    w.set_u32(arch + ".feed_forward_length", (uint32_t) c.intermediate_size);
    w.set_u32(arch + ".attention.head_count", (uint32_t) c.num_heads);
    w.set_u32(arch + ".attention.head_count_kv", (uint32_t) c.num_kv_heads);
    w.set_u32(arch + ".attention.key_length", (uint32_t) c.head_dim);
    w.set_u32(arch + ".attention.value_length", (uint32_t) c.head_dim);
    w.set_u32(arch + ".rope.dimension_count", (uint32_t) c.head_dim);
    w.set_f32(arch + ".rope.freq_base", c.rope_theta);
    w.set_f32(arch + ".attention.layer_norm_rms_epsilon", c.rms_norm_eps);
    w.set_u32(arch + ".vocab_size", (uint32_t) c.vocab_size);
}

GgmlType choose_tensor_type(ExportType type, const std::string & gguf_name, const std::vector<int64_t> & shape,
                            int layer, int num_layers, bool has_output) {
    if (shape.size() < 2) return GgmlType::F32;
    const int64_t nx = shape.back();  // row length
    auto fits = [nx](GgmlType t) { return nx % ggml_block_size(t) == 0; };
    switch (type) {
        case ExportType::F32: return GgmlType::F32;
        case ExportType::F16: return GgmlType::F16;
        case ExportType::BF16: return GgmlType::BF16;
        default: break;
    }
    const GgmlType default_type = type == ExportType::Q8_0   ? GgmlType::Q8_0
                                  : type == ExportType::Q4_0 ? GgmlType::Q4_0
                                                             : GgmlType::Q4_K;
    GgmlType t = default_type;
    const bool is_output = gguf_name == "output.weight" || (!has_output && gguf_name == "token_embd.weight");
    if (is_output) {
        if (!fits(default_type)) t = GgmlType::Q8_0;
        else if (default_type != GgmlType::Q8_0) t = GgmlType::Q6_K;
    } else if (type == ExportType::Q4_K_M && layer >= 0 &&
               (gguf_name.ends_with("attn_v.weight") || gguf_name.ends_with("ffn_down.weight")) &&
               use_more_bits(layer, num_layers)) {
        t = GgmlType::Q6_K;
    }
    if (!fits(t)) {
        t = t == GgmlType::Q4_K ? GgmlType::Q5_0 : t == GgmlType::Q6_K ? GgmlType::Q8_0 : t;
        if (!fits(t)) t = GgmlType::F16;
    }
    return t;
}

std::vector<GgufTensorPlan> plan_model_tensors(const ModelConfig & c, ExportType type) {
    const ParamLayout           layout(c);
    std::vector<GgufTensorPlan> plan;
    const bool                  permute = gguf_permutes_qk(c);
    for (const ParamEntry & e : layout.entries()) {
        GgufTensorPlan p;
        p.hf_name = e.name;
        p.shape   = e.shape;
        for (const auto & [hf, gg] : kGlobalTensors) {
            if (e.name == hf) p.gguf_name = gg;
        }
        int layer = -1, used = 0;
        if (p.gguf_name.empty() && std::sscanf(e.name.c_str(), "model.layers.%d.%n", &layer, &used) == 1 && used > 0) {
            const std::string rest = e.name.substr((size_t) used);
            for (const LayerTensorName & n : kLayerTensors) {
                if (rest != n.hf) continue;
                p.gguf_name = fmt::format("blk.{}.{}", layer, n.gguf);
                p.layer     = layer;
                p.target    = n.target;
                if (permute && n.rope) p.rope_heads = n.rope == 'q' ? c.num_heads : c.num_kv_heads;
            }
        }
        if (p.gguf_name.empty()) throw std::logic_error("no GGUF name for " + e.name);
        plan.push_back(std::move(p));
    }
    for (GgufTensorPlan & p : plan) {
        p.type = choose_tensor_type(type, p.gguf_name, p.shape, p.layer, c.num_layers, !c.tie_word_embeddings);
    }
    if (c.rope_scaling.llama3) {
        GgufTensorPlan p;
        p.gguf_name = "rope_freqs.weight";
        p.shape     = {c.head_dim / 2};
        p.type      = GgmlType::F32;
        plan.push_back(std::move(p));
    }
    return plan;
}

std::vector<float> llama3_rope_factors(const ModelConfig & c) {
    // The divisor of each unscaled inverse frequency: paft's scaled frequencies (Hugging Face's
    // llama3 rule) against the plain ones, so the file says exactly what paft computes.
    ModelConfig plain          = c;
    plain.rope_scaling.llama3  = false;
    const std::vector<float> scaled = rope_inv_freq(c), base = rope_inv_freq(plain);
    std::vector<float>       factors(scaled.size());
    for (size_t i = 0; i < scaled.size(); i++) factors[i] = base[i] / scaled[i];
    return factors;
}

std::shared_ptr<Model> model_from_gguf(const GgufFile & file, const ModelConfig & config) {
    auto                    model = std::make_shared<Model>(config);
    const ParamLayout &     layout = model->layout();
    std::map<std::string, size_t> offsets;
    for (const ParamEntry & e : layout.entries()) offsets[e.name] = e.offset;
    for (const GgufTensorPlan & p : plan_model_tensors(config, ExportType::F32)) {
        if (p.hf_name.empty()) continue;
        const GgufTensorInfo * t = file.find(p.gguf_name);
        if (!t) throw InputError(fmt::format("{}: no tensor {}", file.path(), p.gguf_name));
        if (t->shape != p.shape) throw InputError(fmt::format("{}: tensor {} has another shape", file.path(), p.gguf_name));
        std::vector<float> values = file.read_f32(*t);
        if (p.rope_heads > 0) unpermute_rope_rows(values.data(), p.rope_heads, config.head_dim, p.shape.size() > 1 ? p.shape[1] : 1);
        std::memcpy(model->data() + offsets.at(p.hf_name), values.data(), values.size() * sizeof(float));
    }
    return model;
}

}  // namespace paft
