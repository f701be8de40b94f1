// Forward and backward passes of the decoder over a batch, with an optional LoRA adapter.
//
// The Transformer owns the saved activations for one batch shape and the scratch buffers; the
// model it runs is shared and read-only. The objective is expressed through the per-position
// log-probabilities of the targets, logp [B*T]: backward takes d(objective)/d(logp), which
// covers cross-entropy (SFT), sequence log-ratios (DPO, ORPO) and scoring alike.
//
// The LM head never materialises the whole [B*T, V] logits: it works in chunks of tokens, and
// forward_backward() computes the head's gradient in the same pass when d/d(logp) is known up
// front (cross-entropy), so the head product is not recomputed.
//
// With recomputation on (gradient checkpointing per decoder layer, as Hugging Face's
// gradient_checkpointing), a forward keeps only each layer's input [N, C]; backward reruns each
// layer's forward into one layer's buffers just before back-propagating through it.
#pragma once

#include "core/backend.h"
#include "model/batch.h"
#include "model/lora.h"
#include "model/model.h"

#include <array>
#include <memory>
#include <vector>

namespace paft {

// Where backward() accumulates gradients: LoRA gradients in the adapter's layout
// (LoraAdapter::grads()), full-parameter gradients in the model's layout (ParamLayout). Either
// may be null.
struct GradBuffers {
    float * lora = nullptr;
    float * full = nullptr;
};

class Transformer {
public:
    Transformer(Backend & backend, std::shared_ptr<const Model> model);

    // Training mode applies LoRA dropout, with masks drawn from (seed, step); off by default.
    void set_training(bool training, uint64_t seed = 0, uint64_t step = 0);

    // Recomputation of the layers' activations in the backward (gradient checkpointing): the
    // forward saves L x [N, C] plus one layer's activations instead of L layers' activations, for
    // about one more forward of the layers in the backward. Gradients and logp are bit-identical
    // either way (the same kernels on the same inputs, dropout masks redrawn from the forward's
    // seed and step). A forward alone costs the same either way. Off by default; takes effect at
    // the next forward (a pending backward follows the forward it belongs to).
    void set_recompute(bool recompute) { recompute_ = recompute; }
    bool recompute() const { return recompute_; }

    // Bytes held by the activations a forward keeps for the backward (the buffers' capacity),
    // scratch excluded.
    size_t activation_bytes() const;
    // What activation_bytes() is after a forward of a [B, T] batch (the adapter's targets and rank
    // from `lora`, null for none; `dropout`: LoRA dropout applied, i.e. training with dropout > 0),
    // on buffers sized for that batch alone: how paft run's plan counts activations before any
    // model is loaded. Kept in step with prepare() and proj_forward() (tests compare the two).
    static size_t planned_activation_bytes(const ModelConfig & config, int B, int T, const LoraConfig * lora,
                                           bool recompute, bool dropout);
    // The scratch a forward_backward() or backward() of a [B, T] batch adds to that: logp, the
    // head's logits chunk [min(N, chunk), V], and the gradient buffers of one layer at a time.
    static size_t planned_scratch_bytes(const ModelConfig & config, int B, int T, const LoraConfig * lora,
                                        bool dropout);

    // Runs the model (with `adapter` if not null) and returns logp [B*T]: the log-probability of
    // each position's target (0 where there is none). If `logits_out` is given, the full logits
    // [B*T, V] are written there (tests and inspection only).
    const std::vector<float> & forward(const Batch & batch, const LoraAdapter * adapter, float * logits_out = nullptr);

    // Gradients of sum_n dlogp[n] * logp[n], after forward() on the same batch and adapter,
    // accumulated into `grads`. The adapter's parameters must not change in between.
    void backward(const Batch & batch, const LoraAdapter * adapter, const float * dlogp, GradBuffers grads);

    // forward() then backward() with the head's gradient computed during the forward pass.
    const std::vector<float> & forward_backward(const Batch & batch, const LoraAdapter * adapter, const float * dlogp,
                                                GradBuffers grads);

    const Model & model() const { return *model_; }

private:
    // Saved activations of one layer besides its input; N = B*T tokens.
    struct LayerActs {
        std::vector<float>                           h1;     // [N, C]   input_layernorm output
        std::vector<float>                           rstd1;  // [N]
        std::vector<float>                           qkv;    // [N, S]   q, k (after RoPE), v
        std::vector<float>                           lse;    // [B, Hq, T] attention log-sum-exp
        std::vector<float>                           attn;   // [N, Hq*D] attention output
        std::vector<float>                           x2;     // [N, C]   residual after attention
        std::vector<float>                           h2;     // [N, C]   post_attention_layernorm output
        std::vector<float>                           rstd2;  // [N]
        std::vector<float>                           gu;     // [N, 2F]  gate, up
        std::vector<float>                           act;    // [N, F]   silu(gate) * up
        std::array<std::vector<float>, TARGET_COUNT> lora_h;        // [N, r]   A x per target
        std::array<std::vector<float>, TARGET_COUNT> lora_x;        // [N, in]  dropout(x), with dropout only
        std::array<std::vector<uint8_t>, TARGET_COUNT> lora_keep;   // [N, in]  dropout mask
    };

    // One linear layer of the block, possibly the fusion of several (q,k,v or gate,up) that share
    // their input; `parts` say where each LoRA target's output columns are.
    struct Part {
        int target, offset, out;
    };
    struct Projection {
        int                        layer, in, out;
        std::vector<WeightSegment> W;
        const float *        b;   // [out] or null
        float *              dW;  // [out, in] (full fine-tuning) or null
        float *              db;
        std::vector<Part>    parts;
    };
    enum Which { QKV, O, GATE_UP, DOWN };
    // The projection's weights, and its weight gradients from `dw` (null: base frozen).
    Projection projection(int layer, Which which, const LayerParams * dw) const;

    void prepare(const Batch & batch, const LoraAdapter * adapter);
    void run_layers(const Batch & batch);
    void layer_forward(const Batch & batch, int l, const float * x, float * x_out, LayerActs & a);
    LayerActs & acts(int l) { return layers_[recomputing_ ? 0 : l]; }
    void head(const Batch & batch, const float * dlogp, float * full_grads, float * logits_out);
    void backward_layers(const Batch & batch, float * full_grads);
    void proj_forward(const Projection & p, const float * x, float * y, LayerActs & acts);
    void proj_backward(const Projection & p, const float * x, const float * dy, float * dx, LayerActs & acts);

    Backend &                    backend_;
    std::shared_ptr<const Model> model_;
    const LoraAdapter *          adapter_ = nullptr;  // the adapter of the last forward
    float *                      lora_grads_ = nullptr;  // where backward() puts LoRA gradients
    bool                         training_ = false;
    bool                         dropout_active_ = false;  // whether the last forward applied LoRA dropout
    uint64_t                     seed_ = 0, step_ = 0;
    // The last forward's (seed, step): a recomputation draws its dropout masks again from these,
    // whatever set_training() did since.
    uint64_t                     mask_seed_ = 0, mask_step_ = 0;
    bool                         recompute_   = false;  // as set: applies from the next forward
    bool                         recomputing_ = false;  // whether the last forward kept only layer inputs
    int                          B_ = 0, T_ = 0;

    std::vector<std::vector<float>> xs_;     // L x [N, C] each layer's input (residual stream)
    std::vector<LayerActs>          layers_;  // every layer's activations, or (recomputing) one
    std::vector<float>     x_final_, hf_, rstdf_;  // [N, C], [N, C], [N]
    std::vector<float>     lse_, logp_;            // [N]
    std::vector<float>     cos_, sin_;             // [N, D/2]
    std::vector<float>     dhf_;                   // [N, C] gradient of the final norm's output
    // scratch
    std::vector<float> logits_;                    // [chunk, V]
    std::vector<float> dx_, dh_, dqkv_, dattn_, dgu_, dact_, dlora_h_, dlora_x_;
};

}  // namespace paft
