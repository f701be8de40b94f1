// A decoder-only model's parameters (Llama / Mistral / Qwen2).
//
// Two ways to hold them:
//   - frozen (Model::load): every weight matrix stays in its own type: as stored (F32, BF16, F16)
//     copied tensor by tensor from the safetensors mapping into huge pages of its own (or read in
//     place from the mapping: LoadOptions::mmap), or converted or quantized at load when asked
//     (--torch-dtype, --load-in-8bit, --load-in-4bit); norms and biases are f32. Nothing holds an
//     f32 copy of the model. This is how every command that does not
//     train the base's own weights runs.
//   - trainable (Model::random, Model::load_f32, pre-training): f32 in one contiguous buffer, llm.c
//     style; the same layout (ParamLayout) serves full-parameter gradients and optimizer state.
// Either way, weights() gives the typed Weight handles the products take, and params() the f32
// pointers of a trainable model.
//
// In a trainable model the q, k, v projection weights of a layer are adjacent, so they form one
// [Hq*D + 2*Hkv*D, C] matrix multiplied in one product; likewise gate and up form one [2F, C].
#pragma once

#include "io/safetensors.h"
#include "model/config.h"
#include "tensor/page_buffer.h"
#include "tensor/weight.h"

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace paft {

// Pointers to one layer's tensors inside a parameter-shaped buffer. Absent biases are null.
struct LayerParams {
    float * ln1;    // [C]          input_layernorm
    float * wqkv;   // [S, C]       q_proj, k_proj, v_proj stacked (S = Hq*D + 2*Hkv*D)
    float * bqkv;   // [S]
    float * wo;     // [C, Hq*D]    o_proj
    float * bo;     // [C]
    float * ln2;    // [C]          post_attention_layernorm
    float * wgu;    // [2F, C]      gate_proj, up_proj stacked
    float * bgu;    // [2F]
    float * wdown;  // [C, F]       down_proj
    float * bdown;  // [C]
};

struct ParamView {
    float *                  embed;    // [V, C]  model.embed_tokens.weight
    float *                  norm;     // [C]     model.norm.weight
    float *                  lm_head;  // [V, C]  lm_head.weight (== embed when tied)
    std::vector<LayerParams> layers;
};

// One named tensor of the layout: its Hugging Face name, shape and offset (in floats).
struct ParamEntry {
    std::string          name;
    std::vector<int64_t> shape;
    size_t               offset;
    size_t               numel() const;
};

class ParamLayout {
public:
    explicit ParamLayout(const ModelConfig & config);
    size_t                          size() const { return size_; }  // floats
    const std::vector<ParamEntry> & entries() const { return entries_; }
    ParamView                       view(float * base) const;

private:
    std::vector<ParamEntry> entries_;
    size_t                  size_ = 0;
    size_t                  add(const std::string & name, std::vector<int64_t> shape);
    // offsets of each layer's tensors, or SIZE_MAX when absent
    struct LayerOffsets {
        size_t ln1, wq, bq, wo, bo, ln2, wg, bg, wdown, bdown;
    };
    std::vector<LayerOffsets> layer_offsets_;
    size_t                    embed_ = 0, norm_ = 0, lm_head_ = 0;
};

// One decoder layer's weights as the products read them: f32 vectors (null when absent) and
// typed matrices. bqkv [S] and bgu [2F] are the stacked biases (q, k, v adjacent; gate, up).
struct LayerWeights {
    const float * ln1;
    const float * bqkv;
    const float * bo;
    const float * ln2;
    const float * bgu;
    const float * bdown;
    Weight        q, k, v, o, gate, up, down;  // [out, in] each, as in the Hugging Face files
};

struct ModelWeights {
    Weight                    embed;    // [V, C]
    const float *             norm;     // [C]
    Weight                    lm_head;  // [V, C] (the embedding when tied)
    std::vector<LayerWeights> layers;
};

// Stacked modules (q, k, v; gate, up) as the products see them: segments of output columns,
// one per module, or a single one when the weights are adjacent f32 (a trainable model's layout),
// so the stack is multiplied in one call.
struct WeightSegment {
    Weight W;
    int    offset;  // first output column
};
std::vector<WeightSegment> stacked_weights(std::initializer_list<Weight> weights);

// The precision the frozen weights are kept in (transformers' from_pretrained arguments).
enum class TorchDtype { Auto, F32, BF16, F16 };  // auto: as stored
enum class Quantization { None, Int8, NF4, FP4 };

struct LoadOptions {
    TorchDtype   torch_dtype  = TorchDtype::Auto;
    // load_in_8bit: Q8_0 (blocks of 32 with an f16 scale; not bitsandbytes' LLM.int8 outlier
    // scheme); load_in_4bit: bitsandbytes' NF4 or FP4 with blocks of 64. Only the seven linear
    // layers of each decoder layer are quantized (as bitsandbytes skips lm_head; the embedding is
    // no Linear); the rest keeps torch_dtype.
    Quantization quantization = Quantization::None;
    bool         double_quant = false;  // bnb_4bit_use_double_quant
    // Matrices already in their loaded type are read in place from the file mapping (llama.cpp's
    // use_mmap: loads at once, computes slower on machines whose page walks are costly) instead of
    // copied into huge pages of their own (the default; the same peak memory).
    bool         mmap         = false;
};

// "auto", "float32", "bfloat16", "float16" (also "fp32", "bf16", "fp16"); InputError naming `what`.
TorchDtype   parse_torch_dtype(const std::string & name, const std::string & what);
// "none", "int8", "nf4", "fp4" (the flags' and recipe keys' combined meaning).
const char * quantization_name(Quantization q);
// LoadOptions from transformers' names (torch_dtype, load_in_8bit, load_in_4bit,
// bnb_4bit_quant_type, bnb_4bit_use_double_quant); InputError for both bit widths at once or an
// unknown name.
LoadOptions  model_load_options(const std::string & torch_dtype, bool load_in_8bit, bool load_in_4bit,
                                const std::string & bnb_4bit_quant_type, bool double_quant);

// Bytes the weights of a model with this configuration take once Model::load has loaded them
// with `options` (the stored dtypes from `store`), without reading any weight: what paft run's
// plan and Model::load's memory check count.
size_t planned_weight_bytes(const ModelConfig & config, const TensorStore & store, const LoadOptions & options);
// The same for a model whose matrices are all stored as `stored` (F32, BF16 or F16): one not written
// yet (a merge's or save_model_dir's output) or not downloaded yet (a configuration alone).
size_t planned_weight_bytes(const ModelConfig & config, DType stored, const LoadOptions & options);

class Model {
public:
    // Reads config.json and the safetensors weights of a Hugging Face model directory, frozen,
    // each matrix in the type `options` ask for (by default as stored, in place in the mapping).
    // Every expected tensor must be present with its exact shape; an unexpected tensor is an
    // error too (it means a feature this implementation would silently ignore).
    static std::shared_ptr<Model> load(const std::string & dir, const LoadOptions & options = {});
    // The same directory as a trainable f32 model (one buffer; data() and params() valid).
    static std::shared_ptr<Model> load_f32(const std::string & dir);
    // A model initialised as Hugging Face does: normal(0, 0.02) weights, unit norms, zero biases.
    static std::shared_ptr<Model> random(const ModelConfig & config, uint64_t seed);

    // Writes config.json and model.safetensors (sharded past max_shard_bytes) atomically, every
    // tensor as `dtype` (quantized weights dequantized first), one tensor at a time.
    void save(const std::string & dir, DType dtype, uint64_t max_shard_bytes = 5ull << 30) const;

    const ModelConfig &  config() const { return config_; }
    const ParamLayout &  layout() const { return layout_; }
    const ModelWeights & weights() const { return weights_; }
    size_t               size() const { return layout_.size(); }  // parameters
    // Whether the model is one f32 buffer (trainable); params() and data() need it.
    bool                 trainable() const { return !data_.empty(); }
    const ParamView &    params() const;
    float *              data();
    const float *        data() const;
    // Bytes the weights take in memory (mapped or owned).
    size_t               weight_bytes() const;
    // The type most of the matrices are kept in ("bf16", "nf4", ...), for messages.
    const char *         weight_type() const { return weight_type_name(weights_.layers.empty() ? weights_.embed.type : weights_.layers[0].q.type); }
    // Rotary inverse frequencies [D/2], computed as Hugging Face does (in f32, llama3 scaling).
    const std::vector<float> & inv_freq() const { return inv_freq_; }

    // Rewrites matrix `name` [rows, cols] in place: `edit` gets its values as f32 [rows, cols] and
    // changes them; the matrix is stored back in its type (rounded or quantized again). A weight
    // read from the mapping gets a buffer of its own (its mapped pages are dropped), so folding an
    // adapter into every matrix keeps one copy of the model in memory.
    void edit_matrix(const std::string & name, const std::function<void(float * values)> & edit);

    // Allocates zeroed trainable parameters; RuntimeFailure when they cannot fit in memory.
    explicit Model(const ModelConfig & config);
    Model(const Model &)             = delete;  // views point into the buffers
    Model & operator=(const Model &) = delete;
    ~Model();

private:
    struct Frozen;  // the typed storage of a loaded model
    Model(const ModelConfig & config, std::unique_ptr<Frozen> frozen);
    void index_weights();
    float *       values() { return reinterpret_cast<float *>(data_.data()); }
    const float * values() const { return reinterpret_cast<const float *>(data_.data()); }

    ModelConfig             config_;
    ParamLayout             layout_;
    PageBuffer              data_;  // trainable: every parameter, f32 (zero-filled pages)
    ParamView               view_;
    std::unique_ptr<Frozen> frozen_;
    ModelWeights            weights_;
    std::vector<float>      inv_freq_;
};

// InputError naming the folder and the tensor unless `store` holds exactly the tensors of a model
// with this configuration, each with its shape (an unexpected tensor means a feature this
// implementation would silently ignore). Model::load and paft export check through this.
void check_model_tensors(const std::string & dir, const ModelConfig & config, const TensorStore & store);

std::vector<float> rope_inv_freq(const ModelConfig & config);

// cos and sin [N, D/2] of positions[n] * inv_freq[i], in f32 as Hugging Face computes them (the
// Transformer and the Decoder both take their RoPE tables from here). The vectors are resized.
void rope_tables(const std::vector<float> & inv_freq, const int32_t * positions, size_t N, std::vector<float> & cos,
                 std::vector<float> & sin);

}  // namespace paft
