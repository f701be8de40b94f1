#include "model/model.h"

#include "core/error.h"
#include "core/random.h"
#include "io/fs.h"
#include "model/random_model.h"
#include "tensor/page_buffer.h"

#include <fmt/format.h>

#include <unistd.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <map>
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

double physical_memory() {
    return (double) sysconf(_SC_PHYS_PAGES) * (double) sysconf(_SC_PAGESIZE);
}

// Refuses a parameter buffer larger than the machine's memory before touching it: with Linux's
// overcommit, zero-filling it would get the process killed instead of failing cleanly.
size_t checked_size(const ParamLayout & layout) {
    const double need = (double) layout.size() * sizeof(float);
    const double have = physical_memory();
    if (have > 0 && need > have) {
        throw RuntimeFailure(fmt::format("the model needs {:.1f} GB for its parameters as f32; this machine has {:.1f} "
                                         "GB (frozen weights can stay in their own type: Model::load)",
                                         need / 1e9, have / 1e9));
    }
    return layout.size();
}

bool is_vector(const ParamEntry & e) {
    return e.shape.size() == 1;
}

// The seven linear layers bitsandbytes replaces when loading in 8 or 4 bits.
bool is_quantizable(const std::string & name) {
    for (const char * m : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
        if (name.ends_with(std::string(m) + ".weight")) return true;
    }
    return false;
}

WeightType float_type_of(DType d) {
    return d == DType::BF16 ? WeightType::BF16 : d == DType::F16 ? WeightType::F16 : WeightType::F32;
}

size_t element_bytes(WeightType t) {
    return t == WeightType::F32 ? 4 : 2;
}

}  // namespace

std::vector<WeightSegment> stacked_weights(std::initializer_list<Weight> weights) {
    std::vector<WeightSegment> segments;
    int                        offset = 0;
    for (const Weight & w : weights) {
        if (!segments.empty()) {
            Weight & last = segments.back().W;
            if (last.type == WeightType::F32 && w.type == WeightType::F32 && last.cols == w.cols &&
                last.f32() + last.numel() == w.f32()) {
                last.rows += w.rows;
                offset += (int) w.rows;
                continue;
            }
        }
        segments.push_back({w, offset});
        offset += (int) w.rows;
    }
    return segments;
}

TorchDtype parse_torch_dtype(const std::string & name, const std::string & what) {
    if (name == "auto") return TorchDtype::Auto;
    if (name == "float32" || name == "fp32" || name == "f32") return TorchDtype::F32;
    if (name == "bfloat16" || name == "bf16") return TorchDtype::BF16;
    if (name == "float16" || name == "fp16" || name == "f16") return TorchDtype::F16;
    throw InputError(fmt::format("{}: unknown dtype '{}' (auto, float32, bfloat16, float16)", what, name));
}

LoadOptions model_load_options(const std::string & torch_dtype, bool load_in_8bit, bool load_in_4bit,
                               const std::string & bnb_4bit_quant_type, bool double_quant) {
    LoadOptions o;
    o.torch_dtype = parse_torch_dtype(torch_dtype, "torch_dtype");
    if (load_in_8bit && load_in_4bit) {
        throw InputError("load_in_8bit and load_in_4bit: choose one");
    }
    if (bnb_4bit_quant_type != "nf4" && bnb_4bit_quant_type != "fp4") {
        throw InputError(fmt::format("bnb_4bit_quant_type: expected nf4 or fp4, got '{}'", bnb_4bit_quant_type));
    }
    o.quantization = load_in_8bit   ? Quantization::Int8
                     : load_in_4bit ? (bnb_4bit_quant_type == "fp4" ? Quantization::FP4 : Quantization::NF4)
                                    : Quantization::None;
    o.double_quant = load_in_4bit && double_quant;
    return o;
}

const char * quantization_name(Quantization q) {
    switch (q) {
    case Quantization::None: return "none";
    case Quantization::Int8: return "int8";
    case Quantization::NF4: return "nf4";
    case Quantization::FP4: return "fp4";
    }
    return "?";
}

// A loaded model's typed storage: matrices in the mapping or in buffers of their own, vectors f32.
struct Model::Frozen {
    struct Matrix {
        Weight               weight;
        PageBuffer           bytes;  // owned values or codes (empty when in the mapping)
        std::vector<float>   absmax, absmax_scale;
        std::vector<uint8_t> absmax_q;
        bool                 mapped = false;
    };
    std::shared_ptr<const TensorStore> store;
    std::vector<float>                 vectors;        // norms and biases, in layout order
    std::map<std::string, size_t>      vector_offset;  // name -> offset in vectors
    std::map<std::string, Matrix>      matrices;

    // Stores f32 values [rows, cols] into m as `type` (a buffer of its own).
    static void store_values(Matrix & m, WeightType type, const float * values, int64_t rows, int64_t cols,
                             bool double_quant) {
        m.mapped = false;
        m.absmax.clear();
        m.absmax_q.clear();
        m.absmax_scale.clear();
        const size_t n = (size_t) rows * (size_t) cols;
        float        absmax_offset = 0.0f;  // NF4/FP4 double quantization's offset
        switch (type) {
        case WeightType::F32: m.bytes = PageBuffer::copy_of(values, n * 4); break;
        case WeightType::BF16:
        case WeightType::F16: {
            m.bytes = PageBuffer(n * 2);
            uint16_t * out = reinterpret_cast<uint16_t *>(m.bytes.data());
            uint16_t (*const narrow)(float) = type == WeightType::BF16 ? f32_to_bf16 : f32_to_f16;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) out[i] = narrow(values[i]);
            break;
        }
        case WeightType::Q8_0: {
            Q8Weight q = quantize_q8_0(values, rows, cols);
            m.bytes    = PageBuffer::copy_of(q.blocks.data(), q.blocks.size());
            break;
        }
        case WeightType::NF4:
        case WeightType::FP4: {
            Bnb4Weight q   = quantize_bnb4(values, rows, cols, type, double_quant);
            m.bytes        = PageBuffer::copy_of(q.codes.data(), q.codes.size());
            m.absmax       = std::move(q.absmax);
            m.absmax_q     = std::move(q.absmax_q);
            m.absmax_scale = std::move(q.absmax_scale);
            absmax_offset  = q.weight.absmax_offset;
            break;
        }
        }
        m.weight = Weight{type, rows, cols, m.bytes.data()};
        if (type == WeightType::NF4 || type == WeightType::FP4) {
            m.weight.absmax        = m.absmax.empty() ? nullptr : m.absmax.data();
            m.weight.absmax_q      = m.absmax_q.empty() ? nullptr : m.absmax_q.data();
            m.weight.absmax_scale  = m.absmax_scale.empty() ? nullptr : m.absmax_scale.data();
            m.weight.absmax_offset = absmax_offset;
        }
    }
};

Model::Model(const ModelConfig & config)
    : config_(config), layout_(config_), data_(checked_size(layout_) * sizeof(float)), view_(layout_.view(values())),
      inv_freq_(rope_inv_freq(config_)) {
    index_weights();
}

Model::Model(const ModelConfig & config, std::unique_ptr<Frozen> frozen)
    : config_(config), layout_(config_), frozen_(std::move(frozen)), inv_freq_(rope_inv_freq(config_)) {
    index_weights();
}

Model::~Model() = default;

const ParamView & Model::params() const {
    if (!trainable()) {
        throw RuntimeFailure("Model::params: the model's weights are frozen in their own types (load it with load_f32 "
                             "to train them)");
    }
    return view_;
}

float * Model::data() {
    params();
    return values();
}

const float * Model::data() const {
    params();
    return values();
}

size_t Model::weight_bytes() const {
    if (trainable()) return data_.size();
    size_t bytes = frozen_->vectors.size() * sizeof(float);
    for (const auto & [name, m] : frozen_->matrices) bytes += m.weight.bytes();
    return bytes;
}

// weights_ from the trainable buffer or the frozen storage.
void Model::index_weights() {
    auto matrix = [&](const std::string & name) -> Weight {
        if (trainable()) {
            for (const ParamEntry & e : layout_.entries()) {
                if (e.name == name) return Weight{WeightType::F32, e.shape[0], e.shape[1], values() + e.offset};
            }
            throw RuntimeFailure("Model: no tensor " + name);
        }
        return frozen_->matrices.at(name).weight;
    };
    auto vec = [&](const std::string & name) -> const float * {
        if (trainable()) {
            for (const ParamEntry & e : layout_.entries()) {
                if (e.name == name) return values() + e.offset;
            }
            return nullptr;
        }
        auto it = frozen_->vector_offset.find(name);
        return it == frozen_->vector_offset.end() ? nullptr : frozen_->vectors.data() + it->second;
    };
    const ModelConfig & c = config_;
    weights_.embed        = matrix("model.embed_tokens.weight");
    weights_.norm         = vec("model.norm.weight");
    weights_.lm_head      = c.tie_word_embeddings ? weights_.embed : matrix("lm_head.weight");
    weights_.layers.clear();
    for (int l = 0; l < c.num_layers; l++) {
        const std::string p = fmt::format("model.layers.{}.", l);
        LayerWeights      w;
        w.ln1   = vec(p + "input_layernorm.weight");
        w.bqkv  = vec(p + "self_attn.q_proj.bias");
        w.bo    = vec(p + "self_attn.o_proj.bias");
        w.ln2   = vec(p + "post_attention_layernorm.weight");
        w.bgu   = vec(p + "mlp.gate_proj.bias");
        w.bdown = vec(p + "mlp.down_proj.bias");
        w.q     = matrix(p + "self_attn.q_proj.weight");
        w.k     = matrix(p + "self_attn.k_proj.weight");
        w.v     = matrix(p + "self_attn.v_proj.weight");
        w.o     = matrix(p + "self_attn.o_proj.weight");
        w.gate  = matrix(p + "mlp.gate_proj.weight");
        w.up    = matrix(p + "mlp.up_proj.weight");
        w.down  = matrix(p + "mlp.down_proj.weight");
        weights_.layers.push_back(w);
    }
}

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

std::shared_ptr<Model> Model::load_f32(const std::string & dir) {
    const ModelConfig config = load_model_config(dir);
    const TensorStore store  = TensorStore::open_dir(dir);
    // Every tensor is checked against config.json before anything is allocated, so a config that
    // claims a huge model fails with a message rather than exhausting memory.
    check_model_tensors(dir, config, store);
    auto model = std::make_shared<Model>(config);
    for (const ParamEntry & e : model->layout_.entries()) {
        store.read_f32(e.name, e.shape, model->values() + e.offset);
        store.release(e.name);
    }
    return model;
}

namespace {

// A matrix's type once loaded: quantized if asked and possible, else torch_dtype (auto: as stored).
WeightType loaded_type(const ParamEntry & e, DType stored, const LoadOptions & options) {
    WeightType type = options.torch_dtype == TorchDtype::F32    ? WeightType::F32
                      : options.torch_dtype == TorchDtype::BF16 ? WeightType::BF16
                      : options.torch_dtype == TorchDtype::F16  ? WeightType::F16
                                                                : float_type_of(stored);
    if (is_quantizable(e.name)) {
        if (options.quantization == Quantization::NF4) type = WeightType::NF4;
        if (options.quantization == Quantization::FP4) type = WeightType::FP4;
        // Q8_0 blocks run along rows: a row length that is no multiple of 32 keeps its type.
        if (options.quantization == Quantization::Int8 && e.shape[1] % kQ8Block == 0) type = WeightType::Q8_0;
    }
    return type;
}

// planned_weight_bytes with each matrix's stored dtype from `stored_dtype`.
size_t planned_weight_bytes_of(const ModelConfig &                                 config,
                               const std::function<DType(const std::string &)> & stored_dtype,
                               const LoadOptions &                                 options) {
    size_t            bytes = 0;
    const ParamLayout layout(config);  // alive for the loop (a temporary's entries() would dangle)
    for (const ParamEntry & e : layout.entries()) {
        if (is_vector(e)) {
            bytes += 4 * e.numel();
            continue;
        }
        Weight w{loaded_type(e, stored_dtype(e.name), options), e.shape[0], e.shape[1]};
        static const uint8_t some_codes = 0;  // bytes() only asks whether the absmax values are quantized
        if (options.double_quant) w.absmax_q = &some_codes;
        bytes += w.bytes();
    }
    return bytes;
}

}  // namespace

size_t planned_weight_bytes(const ModelConfig & config, const TensorStore & store, const LoadOptions & options) {
    auto stored_dtype = [&](const std::string & name) { return store.has(name) ? store.info(name).dtype : DType::F32; };
    return planned_weight_bytes_of(config, stored_dtype, options);
}

size_t planned_weight_bytes(const ModelConfig & config, DType stored, const LoadOptions & options) {
    return planned_weight_bytes_of(config, [&](const std::string &) { return stored; }, options);
}

std::shared_ptr<Model> Model::load(const std::string & dir, const LoadOptions & options) {
    const ModelConfig config = load_model_config(dir);
    auto              store  = std::make_shared<const TensorStore>(TensorStore::open_dir(dir));
    check_model_tensors(dir, config, *store);
    const ParamLayout layout(config);
    auto type_of = [&](const ParamEntry & e) { return loaded_type(e, store->info(e.name).dtype, options); };
    // Refuse before reading anything when the weights cannot fit in memory.
    const double need = (double) planned_weight_bytes(config, *store, options);
    const double have = physical_memory();
    if (have > 0 && need > 0.95 * have) {
        throw RuntimeFailure(fmt::format("{}: the model's weights need {:.1f} GB as loaded; this machine has {:.1f} GB "
                                         "(try --load-in-8bit or --load-in-4bit)",
                                         dir, need / 1e9, have / 1e9));
    }
    auto frozen   = std::make_unique<Frozen>();
    frozen->store = store;
    size_t vector_floats = 0;
    for (const ParamEntry & e : layout.entries()) {
        if (is_vector(e)) {
            frozen->vector_offset[e.name] = vector_floats;
            vector_floats += e.numel();
        }
    }
    frozen->vectors.resize(vector_floats);
    for (const ParamEntry & e : layout.entries()) {
        if (is_vector(e)) {
            store->read_f32(e.name, e.shape, frozen->vectors.data() + frozen->vector_offset.at(e.name));
            continue;
        }
        Frozen::Matrix & m    = frozen->matrices[e.name];
        const WeightType type = type_of(e);
        const TensorInfo & info = store->info(e.name);
        std::span<const uint8_t> bytes = store->bytes(e.name);
        const bool in_place = info.dtype != DType::F64 && float_type_of(info.dtype) == type &&
                              (reinterpret_cast<uintptr_t>(bytes.data()) % element_bytes(type)) == 0;
        if (in_place && options.mmap) {
            m.weight = Weight{type, e.shape[0], e.shape[1], bytes.data()};
            m.mapped = true;
            continue;
        }
        if (in_place) {
            // The same bytes, in huge pages of their own (tensor/page_buffer.h says why); the
            // mapping's pages are dropped tensor by tensor, so at most one tensor is held twice.
            m.bytes = PageBuffer::copy_of(bytes.data(), bytes.size());
            store->release(e.name);
            m.weight = Weight{type, e.shape[0], e.shape[1], m.bytes.data()};
            continue;
        }
        std::vector<float> values = store->read_f32(e.name, e.shape);
        store->release(e.name);
        Frozen::store_values(m, type, values.data(), e.shape[0], e.shape[1], options.double_quant);
    }
    return std::shared_ptr<Model>(new Model(config, std::move(frozen)));
}

void Model::edit_matrix(const std::string & name, const std::function<void(float * values)> & edit) {
    if (trainable()) {
        for (const ParamEntry & e : layout_.entries()) {
            if (e.name == name && !is_vector(e)) {
                edit(values() + e.offset);
                return;
            }
        }
        throw InputError(fmt::format("no matrix '{}' in the model", name));
    }
    auto it = frozen_->matrices.find(name);
    if (it == frozen_->matrices.end()) {
        throw InputError(fmt::format("no matrix '{}' in the model", name));
    }
    Frozen::Matrix &   m = it->second;
    const Weight       w = m.weight;
    std::vector<float> values((size_t) w.numel());
    dequantize_weight_rows(w, 0, w.rows, values.data());
    edit(values.data());
    const bool was_mapped = m.mapped;
    Frozen::store_values(m, w.type, values.data(), w.rows, w.cols, w.absmax_q != nullptr);
    if (was_mapped) frozen_->store->release(name);
    index_weights();
}

std::shared_ptr<Model> Model::random(const ModelConfig & config, uint64_t seed) {
    auto     model = std::make_shared<Model>(config);
    Random   rng(seed);
    uint64_t drawn = 0;
    for (const ParamEntry & e : model->layout_.entries()) {
        random_init_values_parallel(e, rng, drawn, model->values() + e.offset);
        drawn += random_init_draws(e);
    }
    return model;
}

void Model::save(const std::string & dir, DType dtype, uint64_t max_shard_bytes) const {
    make_dirs(dir);
    ModelConfig written = config_;
    written.torch_dtype = dtype == DType::BF16 ? "bfloat16" : dtype == DType::F16 ? "float16" : "float32";
    if (trainable()) {
        std::vector<TensorToWrite> tensors;
        for (const ParamEntry & e : layout_.entries()) {
            tensors.push_back(TensorToWrite{e.name, e.shape, values() + e.offset, dtype});
        }
        write_safetensors_sharded(dir, "model", tensors, max_shard_bytes, {{"format", "pt"}});
        write_file_atomic(dir + "/config.json", model_config_to_json(written));
        return;
    }
    // Frozen: one tensor at a time into a partial folder inside `dir`, whose files are then renamed
    // into place (each rename atomic), so no f32 copy of the model is ever made.
    std::vector<ShardedWriter::Entry> entries;
    for (const ParamEntry & e : layout_.entries()) entries.push_back({e.name, e.shape, dtype});
    const std::string partial = fmt::format("{}/.partial-save-{}", dir, (long) getpid());
    std::filesystem::remove_all(partial);
    make_dirs(partial);
    {
        ShardedWriter      writer(partial, "model", entries, max_shard_bytes, {{"format", "pt"}});
        std::vector<float> values;
        for (size_t i = 0; i < entries.size(); i++) {
            const ParamEntry & e = layout_.entries()[i];
            if (is_vector(e)) {
                writer.write_f32(i, frozen_->vectors.data() + frozen_->vector_offset.at(e.name));
                continue;
            }
            const Weight & w = frozen_->matrices.at(e.name).weight;
            if (w.type != WeightType::NF4 && w.type != WeightType::FP4 && w.type != WeightType::Q8_0 &&
                float_type_of(dtype) == w.type) {
                writer.write_raw(i, static_cast<const uint8_t *>(w.data), w.bytes());
                continue;
            }
            values.resize((size_t) w.numel());
            dequantize_weight_rows(w, 0, w.rows, values.data());
            writer.write_f32(i, values.data());
        }
        writer.finish();
    }
    for (const auto & f : std::filesystem::directory_iterator(partial)) {
        std::filesystem::rename(f.path(), std::filesystem::path(dir) / f.path().filename());
    }
    std::filesystem::remove_all(partial);
    write_file_atomic(dir + "/config.json", model_config_to_json(written));
}

}  // namespace paft
