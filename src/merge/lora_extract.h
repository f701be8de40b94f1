// A merged model written back as a PEFT LoRA adapter (`paft merge --out-format lora --rank R`),
// as mergekit-extract-lora and PEFT's add_weighted_adapter (svd) do it: each targeted weight's
// delta D = W_merged - W_base [rows, cols] is factorised by a truncated SVD, D = U S V^T ~
// B A with A = V_r^T [r, cols] and B = U_r S_r [rows, r], and the adapter is saved with
// lora_alpha = r, so its scale is 1 and s * B * A is the best rank-r approximation of D
// (Eckart-Young). How much of D that keeps is reported per tensor as retained energy:
// sum_{k<r} s_k^2 / sum_k s_k^2 (1 - retained is the squared relative Frobenius error).
#pragma once

#include "model/config.h"
#include "model/lora.h"

#include <string>
#include <vector>

namespace paft {

// The rank-`rank` factors of one delta [rows, cols].
struct LowRank {
    int                 rows = 0, cols = 0, rank = 0;
    std::vector<float>  A;  // [rank, cols]: the top right-singular vectors (orthonormal rows)
    std::vector<float>  B;  // [rows, rank]: the top left-singular vectors times their singular values
    double              retained = 1.0;  // sum_{k<rank} s_k^2 / sum_k s_k^2; 1 when the delta is 0
    std::vector<double> singular_values;  // all min(rows, cols) of them, descending
};

// Truncated SVD of delta [rows, cols] (row-major f32), computed in double by LAPACK's
// divide-and-conquer dgesdd, stored as f32. When rank > min(rows, cols) the factors keep every
// singular triple and are padded with zero rows of A and zero columns of B to `rank`, so all the
// modules of an adapter share one r. Each factor pair's sign is fixed (the largest-magnitude
// entry of each row of A is positive), so the result does not depend on LAPACK's sign choice.
// A zero delta gives A = B = 0 and retained = 1.
//
// Thread-safe, and single-threaded inside: it may be called from many OpenMP workers at once.
// Deterministic: the same input gives the same bits whatever thread calls it.
// Memory while it runs: about 8 * (rows * cols + k * (rows + cols) + 4 * k^2) bytes with
// k = min(rows, cols) (the double copy, both factors, dgesdd's workspace): 350 MB for a
// 5632 x 2048 delta, 1.6 GB for 14336 x 4096.
// InputError naming `name` for rows, cols or rank < 1 or a non-finite value in the delta;
// RuntimeFailure if dgesdd does not converge.
LowRank factorize_delta(const float * delta, int rows, int cols, int rank, const std::string & name = "delta");

// One targeted linear layer's factors: the delta of
// model.layers.{layer}.{self_attn|mlp}.{lora_target_name(target)}.weight.
struct LowRankModule {
    int     layer  = 0;
    int     target = TARGET_Q;  // LoraTarget
    LowRank factors;
};

// The (layer, target) of a base-model weight name "model.layers.{l}.self_attn.q_proj.weight"
// (q, k, v, o) or "model.layers.{l}.mlp.gate_proj.weight" (gate, up, down); false for any other
// tensor (embeddings, norms, biases, lm_head), which a LoRA adapter cannot carry.
bool lora_module_of(const std::string & tensor_name, int * layer, int * target);

// The adapter holding `modules` (any order): r = lora_alpha = rank, target_modules = the targets
// with a non-zero delta in some layer (every target given when all deltas are zero). A module a
// target lacks in some layer is a zero delta there (A = B = 0). InputError naming the module for
// a layer or shape that does not fit `model`, a rank other than `rank`, or a module given twice;
// InputError when `modules` is empty.
LoraAdapter lora_adapter_from_factors(const ModelConfig & model, const std::vector<LowRankModule> & modules, int rank);

// Writes the PEFT adapter directory `dir` (adapter_config.json, adapter_model.safetensors in
// f32, as LoraAdapter::save) for lora_adapter_from_factors(model, modules, rank), plus
// lora_extraction.json, the retained-energy report below. Each file is written atomically.
void write_lora_adapter(const std::string & dir, const std::string & base_model_path, const ModelConfig & model,
                        const std::vector<LowRankModule> & modules, int rank);

// The report as JSON text: {"rank", "retained_min", "retained_total" (kept energy over all
// energy, summed over modules), "modules": [{"module", "shape": [rows, cols], "retained",
// "singular_values": the kept ones}, ...] in (layer, target) order}.
std::string retained_energy_report(const std::vector<LowRankModule> & modules, int rank);

}  // namespace paft
