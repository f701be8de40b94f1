#include "model/model.h"

#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"

#include <fmt/format.h>

#include <unistd.h>

#include <climits>
#include <cmath>
#include <numbers>
#include <set>

namespace paft {

size_t ParamEntry::numel() const {
    size_t n = 1;
    for (int64_t d : shape) {
        n *= (size_t) d;
    }
    return n;
}

size_t ParamLayout::add(const std::string & name, std::vector<int64_t> shape) {
    ParamEntry e{name, std::move(shape), size_};
    size_ += e.numel();
    entries_.push_back(std::move(e));
    return entries_.back().offset;
}

ParamLayout::ParamLayout(const ModelConfig & c) {
    const int64_t C = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
    embed_ = add("model.embed_tokens.weight", {c.vocab_size, C});
    for (int l = 0; l < c.num_layers; l++) {
        std::string  p = fmt::format("model.layers.{}.", l);
        LayerOffsets o;
        o.ln1 = add(p + "input_layernorm.weight", {C});
        // q, k, v weights adjacent (then their biases adjacent): one fused product.
        o.wq = add(p + "self_attn.q_proj.weight", {Q, C});
        add(p + "self_attn.k_proj.weight", {K, C});
        add(p + "self_attn.v_proj.weight", {K, C});
        o.bq = SIZE_MAX;
        if (c.attention_bias) {
            o.bq = add(p + "self_attn.q_proj.bias", {Q});
            add(p + "self_attn.k_proj.bias", {K});
            add(p + "self_attn.v_proj.bias", {K});
        }
        o.wo    = add(p + "self_attn.o_proj.weight", {C, Q});
        o.bo    = c.o_proj_bias ? add(p + "self_attn.o_proj.bias", {C}) : SIZE_MAX;
        o.ln2   = add(p + "post_attention_layernorm.weight", {C});
        o.wg    = add(p + "mlp.gate_proj.weight", {F, C});
        add(p + "mlp.up_proj.weight", {F, C});
        o.bg = SIZE_MAX;
        if (c.mlp_bias) {
            o.bg = add(p + "mlp.gate_proj.bias", {F});
            add(p + "mlp.up_proj.bias", {F});
        }
        o.wdown = add(p + "mlp.down_proj.weight", {C, F});
        o.bdown = c.mlp_bias ? add(p + "mlp.down_proj.bias", {C}) : SIZE_MAX;
        layer_offsets_.push_back(o);
    }
    norm_    = add("model.norm.weight", {C});
    lm_head_ = c.tie_word_embeddings ? embed_ : add("lm_head.weight", {c.vocab_size, C});
}

ParamView ParamLayout::view(float * base) const {
    auto at = [base](size_t off) { return off == SIZE_MAX ? nullptr : base + off; };
    ParamView v;
    v.embed   = at(embed_);
    v.norm    = at(norm_);
    v.lm_head = at(lm_head_);
    for (const LayerOffsets & o : layer_offsets_) {
        v.layers.push_back(LayerParams{at(o.ln1), at(o.wq), at(o.bq), at(o.wo), at(o.bo), at(o.ln2), at(o.wg),
                                       at(o.bg), at(o.wdown), at(o.bdown)});
    }
    return v;
}

std::vector<float> rope_inv_freq(const ModelConfig & c) {
    // Hugging Face computes these in f32: 1 / theta^(2i/D), then the llama3 band scaling.
    const int          half = c.head_dim / 2;
    std::vector<float> inv(half);
    for (int i = 0; i < half; i++) {
        float exponent = (float) (2 * i) / (float) c.head_dim;
        inv[i]         = 1.0f / std::pow(c.rope_theta, exponent);
    }
    if (!c.rope_scaling.llama3) {
        return inv;
    }
    const RopeScaling & s              = c.rope_scaling;
    const float         old_len        = (float) s.original_max_position_embeddings;
    const float         low_wavelen    = old_len / s.low_freq_factor;
    const float         high_wavelen   = old_len / s.high_freq_factor;
    for (int i = 0; i < half; i++) {
        float wavelen = 2.0f * std::numbers::pi_v<float> / inv[i];
        if (wavelen > low_wavelen) {
            inv[i] = inv[i] / s.factor;  // low frequencies: fully interpolated
        } else if (wavelen >= high_wavelen) {
            float smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            inv[i]       = (1.0f - smooth) * inv[i] / s.factor + smooth * inv[i];
        }
    }
    return inv;
}

void rope_tables(const std::vector<float> & inv_freq, const int32_t * positions, size_t N, std::vector<float> & cos,
                 std::vector<float> & sin) {
    const size_t half = inv_freq.size();
    cos.resize(N * half);
    sin.resize(N * half);
    for (size_t n = 0; n < N; n++) {
        float pos = (float) positions[n];
        for (size_t i = 0; i < half; i++) {
            float angle       = pos * inv_freq[i];
            cos[n * half + i] = std::cos(angle);
            sin[n * half + i] = std::sin(angle);
        }
    }
}

namespace {

// Refuses a parameter buffer larger than the machine's memory before touching it: with Linux's
// overcommit, zero-filling it would get the process killed instead of failing cleanly.
size_t checked_size(const ParamLayout & layout) {
    const double need = (double) layout.size() * sizeof(float);
    const double have = (double) sysconf(_SC_PHYS_PAGES) * (double) sysconf(_SC_PAGESIZE);
    if (have > 0 && need > have) {
        throw RuntimeFailure(fmt::format("the model needs {:.1f} GB for its parameters; this machine has {:.1f} GB",
                                         need / 1e9, have / 1e9));
    }
    return layout.size();
}

}  // namespace

Model::Model(const ModelConfig & config)
    : config_(config), layout_(config_), data_(checked_size(layout_), 0.0f), view_(layout_.view(data_.data())),
      inv_freq_(rope_inv_freq(config_)) {}

void check_model_tensors(const std::string & dir, const ModelConfig & config, const TensorStore & store) {
    const ParamLayout     layout(config);
    std::set<std::string> expected;
    for (const ParamEntry & e : layout.entries()) {
        if (!store.has(e.name)) {
            throw InputError(fmt::format("{}: tensor '{}' is missing from the model's safetensors", dir, e.name));
        }
        store.expect_shape(e.name, e.shape);
        expected.insert(e.name);
    }
    for (const std::string & name : store.names()) {
        // Rotary tables saved by some old checkpoints are recomputed, never read.
        bool rotary = name.find("rotary_emb.inv_freq") != std::string::npos;
        if (!expected.count(name) && !rotary && !(config.tie_word_embeddings && name == "lm_head.weight")) {
            throw InputError(fmt::format("{}: unexpected tensor '{}' (not part of a {} with this config.json)", dir,
                                         name, config.architecture_name));
        }
    }
}

std::shared_ptr<Model> Model::load(const std::string & dir) {
    const ModelConfig config = load_model_config(dir);
    const TensorStore store  = TensorStore::open_dir(dir);
    // Every tensor is checked against config.json before anything is allocated, so a config that
    // claims a huge model fails with a message rather than exhausting memory.
    check_model_tensors(dir, config, store);
    auto model = std::make_shared<Model>(config);
    for (const ParamEntry & e : model->layout_.entries()) {
        store.read_f32(e.name, e.shape, model->data_.data() + e.offset);
    }
    return model;
}

std::shared_ptr<Model> Model::random(const ModelConfig & config, uint64_t seed) {
    auto   model = std::make_shared<Model>(config);
    Random rng(seed);
    for (const ParamEntry & e : model->layout_.entries()) {
        float * p      = model->data_.data() + e.offset;
        bool    is_norm = e.name.ends_with("layernorm.weight") || e.name == "model.norm.weight";
        bool    is_bias = e.name.ends_with(".bias");
        for (size_t i = 0; i < e.numel(); i++) {
            p[i] = is_norm ? 1.0f : is_bias ? 0.0f : 0.02f * rng.normal();
        }
    }
    return model;
}

void Model::save(const std::string & dir, DType dtype, uint64_t max_shard_bytes) const {
    make_dirs(dir);
    std::vector<TensorToWrite> tensors;
    for (const ParamEntry & e : layout_.entries()) {
        tensors.push_back(TensorToWrite{e.name, e.shape, data_.data() + e.offset, dtype});
    }
    ModelConfig written = config_;
    written.torch_dtype = dtype == DType::BF16 ? "bfloat16" : dtype == DType::F16 ? "float16" : "float32";
    write_safetensors_sharded(dir, "model", tensors, max_shard_bytes, {{"format", "pt"}});
    write_file_atomic(dir + "/config.json", model_config_to_json(written));
}

}  // namespace paft
