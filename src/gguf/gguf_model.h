// How a paft model (Llama, Mistral, Qwen2) is described in llama.cpp's GGUF files: the
// architecture's metadata keys, llama.cpp's tensor names, the rotary row order of q and k, and
// which ggml type each tensor gets for a requested file type (llama.cpp's quantizer's rules).
#pragma once

#include "gguf/gguf_file.h"
#include "model/config.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paft {

class Model;

// What `paft export --type` asks for. F32/F16/BF16/Q8_0/Q4_0 store every matrix in that type;
// Q4_K_M is llama.cpp's mix (see choose_tensor_type). Vectors (norms, biases) stay f32.
enum class ExportType { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M };

std::optional<ExportType> parse_export_type(const std::string & name);  // "f32", ..., "q4_k_m"
const char *              export_type_name(ExportType type);
std::string               export_type_list();  // "f32, f16, bf16, q8_0, q4_0, q4_k_m"
// llama.cpp's general.file_type (llama_ftype) for the type.
uint32_t                  llama_file_type(ExportType type);

// "llama" (Llama, Mistral) or "qwen2": llama.cpp's general.architecture.
const char * gguf_architecture(const ModelConfig & config);

// {arch}.context_length: max_position_embeddings, or the sliding window when there is one. llama.cpp
// runs Mistral as "llama", whose attention has no window; up to the window's length the two agree,
// so the file says the model's context is the window (llama.cpp warns when asked for more).
int gguf_context_length(const ModelConfig & config);

// llama.cpp's Llama graph rotates adjacent pairs of each head's q and k (x[2i], x[2i+1]);
// Hugging Face's Llama rotates halves (x[i], x[i + D/2]). Exporting a Llama-family model
// reorders the rows of q_proj and k_proj (their biases, and a LoRA B's rows) within each head
// from [2, D/2] to [D/2, 2]. Qwen2 runs llama.cpp's NeoX rotation, which is the halves layout.
bool gguf_permutes_qk(const ModelConfig & config);
// rows: [heads * D, row_length] in Hugging Face's order -> llama.cpp's (in place).
void permute_rope_rows(float * rows, int heads, int head_dim, int64_t row_length);
// The inverse (GGUF -> Hugging Face order).
void unpermute_rope_rows(float * rows, int heads, int head_dim, int64_t row_length);

// Writes general.* and the architecture's keys (sizes, heads, rope, norms). Throws InputError
// naming the field for anything llama.cpp cannot represent.
void write_model_metadata(GgufWriter & writer, const ModelConfig & config, const std::string & name,
                          ExportType type);

// One model tensor as exported.
struct GgufTensorPlan {
    std::string          hf_name;    // "model.layers.3.self_attn.q_proj.weight"
    std::string          gguf_name;  // "blk.3.attn_q.weight"
    std::vector<int64_t> shape;      // outermost first
    int                  layer  = -1;  // -1 outside the decoder layers
    int                  target = -1;  // LoraTarget of a linear weight, else -1
    int                  rope_heads = 0;  // > 0: permute rows within this many heads
    GgmlType             type   = GgmlType::F32;
};

// Every tensor of the model in Hugging Face's order, named and typed for the file; with llama3
// rope scaling, llama.cpp's rope_freqs.weight (hf_name empty: computed, see llama3_rope_factors).
std::vector<GgufTensorPlan> plan_model_tensors(const ModelConfig & config, ExportType type);

// The ggml type of a tensor for a requested file type, as llama.cpp's quantizer decides it:
// vectors f32; f32/f16/bf16/q8_0 every matrix; q4_0 every matrix but the output projection (or
// the tied embedding), which gets q6_K; q4_k_m q4_K, with q6_K for the output projection and for
// attn_v and ffn_down in the layers where use_more_bits(i, n) holds (i < n/8, i >= 7n/8, or
// (i - n/8) % 3 == 2). A row length that does not fill the type's blocks falls back as llama.cpp
// does: q4_K -> q5_0, q6_K -> q8_0, and to f16 when even that does not fit (an output projection
// whose rows do not fill the default type's blocks gets q8_0).
GgmlType choose_tensor_type(ExportType type, const std::string & gguf_name, const std::vector<int64_t> & shape,
                            int layer, int num_layers, bool has_output);

// llama.cpp's rope_freqs for llama3 rope scaling: per frequency i of D/2, the divisor of the
// unscaled inverse frequency (1 for high frequencies, `factor` for low ones, smoothed between).
std::vector<float> llama3_rope_factors(const ModelConfig & config);

// A paft model from an exported GGUF file's tensors (dequantized, q/k rows put back in Hugging
// Face's order) and the configuration of the model it was exported from: paft's inference on
// exactly the weights llama.cpp runs.
std::shared_ptr<Model> model_from_gguf(const GgufFile & file, const ModelConfig & config);

}  // namespace paft
