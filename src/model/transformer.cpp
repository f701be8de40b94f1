#include "model/transformer.h"

#include "core/error.h"
#include "core/random.h"

#include <algorithm>
#include <cmath>

namespace paft {
namespace {

// The LM head works on chunks of tokens whose [chunk, V] logits take at most this many bytes:
// large chunks pack the head's weight matrix fewer times per step, small ones bound the memory
// (vocab 32k: 512 tokens; 152k: 110 tokens).
constexpr size_t kHeadChunkBytes = 64ull << 20;

int head_chunk_tokens(int V) {
    return (int) std::clamp<size_t>(kHeadChunkBytes / ((size_t) V * sizeof(float)), 16, 512);
}

void zero(std::vector<float> & v, size_t n) {
    v.resize(n);
    std::fill(v.begin(), v.begin() + n, 0.0f);
}

const int32_t * doc_start(const Batch & batch) {
    return batch.doc_start.empty() ? nullptr : batch.doc_start.data();
}

}  // namespace

Transformer::Transformer(Backend & backend, std::shared_ptr<const Model> model)
    : backend_(backend), model_(std::move(model)), layers_(model_->config().num_layers) {}

void Transformer::set_training(bool training, uint64_t seed, uint64_t step) {
    training_ = training;
    seed_     = seed;
    step_     = step;
}

Transformer::Projection Transformer::projection(int l, Which which, const LayerParams * grads) const {
    const ModelConfig &  c  = model_->config();
    const LayerWeights & w  = model_->weights().layers[l];
    const LayerParams    dw = grads ? *grads : LayerParams{};
    const int C = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
    switch (which) {
    case QKV:
        return {l, C, c.qkv_dim(), stacked_weights({w.q, w.k, w.v}), w.bqkv, dw.wqkv, dw.bqkv,
                {{TARGET_Q, 0, Q}, {TARGET_K, Q, K}, {TARGET_V, Q + K, K}}};
    case O:
        return {l, Q, C, stacked_weights({w.o}), w.bo, dw.wo, dw.bo, {{TARGET_O, 0, C}}};
    case GATE_UP:
        return {l, C, 2 * F, stacked_weights({w.gate, w.up}), w.bgu, dw.wgu, dw.bgu,
                {{TARGET_GATE, 0, F}, {TARGET_UP, F, F}}};
    case DOWN:
        break;
    }
    return {l, F, C, stacked_weights({w.down}), w.bdown, dw.wdown, dw.bdown, {{TARGET_DOWN, 0, C}}};
}

// y[N, out] = x W^T + b + sum over LoRA parts of s * (A x') B^T into the part's columns.
// y null (a recomputation that needs no output): only what proj_backward reads, the dropout
// masks and inputs and h = A x'.
void Transformer::proj_forward(const Projection & p, const float * x, float * y, LayerActs & acts) {
    const int N = B_ * T_;
    if (y) {
        for (const WeightSegment & seg : p.W) {
            backend_.matmul_weight(x, p.in, seg.W, 0.0f, y + seg.offset, p.out, N);
        }
        if (p.b) {
            backend_.add_bias(y, p.b, N, p.out, p.out);
        }
    }
    if (!adapter_) {
        return;
    }
    const LoraConfig & lc = adapter_->config();
    for (const Part & part : p.parts) {
        if (!adapter_->has(p.layer, part.target)) {
            continue;
        }
        const float * xin = x;
        if (dropout_active_) {
            // Inverted dropout with a mask that depends only on (seed, step, layer, target, index).
            auto & keep = acts.lora_keep[part.target];
            auto & xd   = acts.lora_x[part.target];
            keep.resize((size_t) N * p.in);
            xd.resize((size_t) N * p.in);
            uint64_t stream = ((uint64_t) p.layer * TARGET_COUNT + part.target) ^ (mask_step_ << 20);
            uint32_t limit  = (uint32_t) (lc.dropout * 4294967296.0);
            for (size_t i = 0; i < keep.size(); i++) {
                keep[i] = (uint32_t) hash_u64(mask_seed_, stream, i) >= limit;
            }
            backend_.mul_mask(xd.data(), x, keep.data(), 1.0f / (1.0f - lc.dropout), keep.size());
            xin = xd.data();
        }
        auto & h = acts.lora_h[part.target];
        h.resize((size_t) N * lc.r);
        backend_.gemm(false, true, N, lc.r, p.in, 1.0f, xin, p.in, adapter_->A(p.layer, part.target), p.in, 0.0f,
                      h.data(), lc.r);
        if (y) {
            backend_.gemm(false, true, N, part.out, lc.r, lc.scale(), h.data(), lc.r,
                          adapter_->B(p.layer, part.target), lc.r, 1.0f, y + part.offset, p.out);
        }
    }
}

// Given dy [N, out]: dx [N, in] += dy W (+ LoRA paths); LoRA and (full) weight gradients +=.
void Transformer::proj_backward(const Projection & p, const float * x, const float * dy, float * dx, LayerActs & acts) {
    const int N = B_ * T_;
    if (adapter_) {
        const LoraConfig & lc = adapter_->config();
        const float        s  = lc.scale();
        for (const Part & part : p.parts) {
            if (!adapter_->has(p.layer, part.target)) {
                continue;
            }
            const float * h       = acts.lora_h[part.target].data();
            bool          dropped = dropout_active_;
            const float * xin     = dropped ? acts.lora_x[part.target].data() : x;
            const float * A       = adapter_->A(p.layer, part.target);
            const float * Bm      = adapter_->B(p.layer, part.target);
            dlora_h_.resize((size_t) N * lc.r);
            // dh = s dy_part B                                  [N, r]
            backend_.gemm(false, false, N, lc.r, part.out, s, dy + part.offset, p.out, Bm, lc.r, 0.0f,
                          dlora_h_.data(), lc.r);
            if (lora_grads_) {
                // dB += s dy_part^T h  [out, r];  dA += dh^T x'  [r, in]
                backend_.gemm(true, false, part.out, lc.r, N, s, dy + part.offset, p.out, h, lc.r, 1.0f,
                              lora_grads_ + adapter_->offset_B(p.layer, part.target), lc.r);
                backend_.gemm(true, false, lc.r, p.in, N, 1.0f, dlora_h_.data(), lc.r, xin, p.in, 1.0f,
                              lora_grads_ + adapter_->offset_A(p.layer, part.target), p.in);
            }
            if (dropped) {
                // dx += keep / (1 - p) * (dh A)
                dlora_x_.resize((size_t) N * p.in);
                backend_.gemm(false, false, N, p.in, lc.r, 1.0f, dlora_h_.data(), lc.r, A, p.in, 0.0f,
                              dlora_x_.data(), p.in);
                backend_.mul_mask(dlora_x_.data(), dlora_x_.data(), acts.lora_keep[part.target].data(),
                                  1.0f / (1.0f - lc.dropout), dlora_x_.size());
                backend_.add(dx, dlora_x_.data(), dlora_x_.size());
            } else {
                backend_.gemm(false, false, N, p.in, lc.r, 1.0f, dlora_h_.data(), lc.r, A, p.in, 1.0f, dx, p.in);
            }
        }
    }
    // Frozen or not, the base weight passes the gradient on: dx += dy W.
    for (const WeightSegment & seg : p.W) {
        backend_.matmul_weight_backward(dx, p.in, dy + seg.offset, p.out, seg.W, N);
    }
    if (p.dW) {
        backend_.gemm(true, false, p.out, p.in, N, 1.0f, dy, p.out, x, p.in, 1.0f, p.dW, p.in);
    }
    if (p.db) {
        backend_.bias_backward(p.db, dy, N, p.out, p.out);
    }
}

void Transformer::prepare(const Batch & batch, const LoraAdapter * adapter) {
    const ModelConfig & c = model_->config();
    check_batch(batch, c.vocab_size);
    adapter_        = adapter;
    dropout_active_ = training_ && adapter && adapter->config().dropout > 0.0f;
    mask_seed_      = seed_;
    mask_step_      = step_;
    recomputing_    = recompute_;
    B_              = batch.B;
    T_              = batch.T;
    const size_t N = (size_t) B_ * T_;
    xs_.resize(c.num_layers);
    for (std::vector<float> & x : xs_) {
        x.resize(N * c.hidden_size);
    }
    // Recomputing: one layer's buffers, shared by all (shrinking the vector frees the others).
    layers_.resize(recomputing_ ? 1 : c.num_layers);
    for (LayerActs & a : layers_) {
        a.h1.resize(N * c.hidden_size);
        a.rstd1.resize(N);
        a.qkv.resize(N * c.qkv_dim());
        a.lse.resize((size_t) B_ * c.num_heads * T_);
        a.attn.resize(N * c.q_dim());
        a.x2.resize(N * c.hidden_size);
        a.h2.resize(N * c.hidden_size);
        a.rstd2.resize(N);
        a.gu.resize(N * 2 * c.intermediate_size);
        a.act.resize(N * c.intermediate_size);
    }
    x_final_.resize(N * c.hidden_size);
    hf_.resize(N * c.hidden_size);
    rstdf_.resize(N);
    lse_.resize(N);
    logp_.assign(N, 0.0f);
    rope_tables(model_->inv_freq(), batch.position_ids.data(), batch.position_ids.size(), cos_, sin_);
}

// One decoder layer: x [N, C] -> x_out [N, C], keeping its activations in `a`. x_out null: a
// recomputation for the backward, which needs the activations but not the output, so the down
// projection computes only its LoRA side and the residual is skipped.
void Transformer::layer_forward(const Batch & batch, int l, const float * x, float * x_out, LayerActs & a) {
    const ModelConfig &  c = model_->config();
    const LayerWeights & w = model_->weights().layers[l];
    const int            N = B_ * T_, C = c.hidden_size, D = c.head_dim, S = c.qkv_dim();
    const AttentionShape shape{B_, T_, c.num_heads, c.num_kv_heads, D, c.sliding_window};
    // attention block: x2 = x + o_proj(attention(rope(qkv_proj(norm(x)))))
    backend_.rmsnorm_forward(a.h1.data(), a.rstd1.data(), x, w.ln1, N, C, c.rms_norm_eps);
    proj_forward(projection(l, QKV, nullptr), a.h1.data(), a.qkv.data(), a);
    backend_.rope(a.qkv.data(), N, S, c.num_heads, D, cos_.data(), sin_.data(), false);
    backend_.rope(a.qkv.data() + c.q_dim(), N, S, c.num_kv_heads, D, cos_.data(), sin_.data(), false);
    backend_.attention_forward(a.attn.data(), a.lse.data(), a.qkv.data(), batch.attention_mask.data(),
                               doc_start(batch), shape);
    proj_forward(projection(l, O, nullptr), a.attn.data(), a.x2.data(), a);
    backend_.add(a.x2.data(), x, (size_t) N * C);
    // MLP block: x_out = x2 + down(silu(gate(norm(x2))) * up(norm(x2)))
    backend_.rmsnorm_forward(a.h2.data(), a.rstd2.data(), a.x2.data(), w.ln2, N, C, c.rms_norm_eps);
    proj_forward(projection(l, GATE_UP, nullptr), a.h2.data(), a.gu.data(), a);
    backend_.swiglu_forward(a.act.data(), a.gu.data(), N, c.intermediate_size);
    proj_forward(projection(l, DOWN, nullptr), a.act.data(), x_out, a);
    if (x_out) {
        backend_.add(x_out, a.x2.data(), (size_t) N * C);
    }
}

void Transformer::run_layers(const Batch & batch) {
    const ModelConfig & c = model_->config();
    const ModelWeights & w = model_->weights();
    const int            N = B_ * T_, C = c.hidden_size;
    backend_.embedding_forward(xs_[0].data(), batch.input_ids.data(), w.embed, N, C);
    for (int l = 0; l < c.num_layers; l++) {
        float * x_out = l + 1 < c.num_layers ? xs_[l + 1].data() : x_final_.data();
        layer_forward(batch, l, xs_[l].data(), x_out, acts(l));
    }
    backend_.rmsnorm_forward(hf_.data(), rstdf_.data(), x_final_.data(), w.norm, N, C, c.rms_norm_eps);
}

// The LM head and log-softmax in chunks of tokens. With dlogp, also the gradient: dhf_ and
// (full fine-tuning) the head weight's gradient. Chunks without any target are skipped unless
// the logits are asked for.
void Transformer::head(const Batch & batch, const float * dlogp, float * full_grads, float * logits_out) {
    const ModelConfig & c  = model_->config();
    const int           N  = B_ * T_, C = c.hidden_size, V = c.vocab_size;
    const Weight &      Wh = model_->weights().lm_head;
    float *             dWh = full_grads ? model_->layout().view(full_grads).lm_head : nullptr;
    const int chunk = head_chunk_tokens(V);
    logits_.resize((size_t) std::min(N, chunk) * V);
    if (dlogp) {
        zero(dhf_, (size_t) N * C);
    }
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int n     = std::min(chunk, N - n0);
        bool      any   = std::any_of(batch.targets.begin() + n0, batch.targets.begin() + n0 + n,
                                      [](int32_t t) { return t >= 0; });
        if (!any && !logits_out) {
            continue;
        }
        const float * h = hf_.data() + (size_t) n0 * C;
        backend_.matmul_weight(h, C, Wh, 0.0f, logits_.data(), V, n);
        if (logits_out) {
            std::copy(logits_.begin(), logits_.begin() + (size_t) n * V, logits_out + (size_t) n0 * V);
        }
        backend_.logsoftmax_target(logp_.data() + n0, lse_.data() + n0, logits_.data(), batch.targets.data() + n0, n, V);
        if (!dlogp || !any) {
            continue;
        }
        // logits_ <- d/dlogits; dhf = dlogits Wh; dWh += dlogits^T hf
        backend_.logsoftmax_target_backward(logits_.data(), lse_.data() + n0, batch.targets.data() + n0, dlogp + n0, n, V);
        backend_.matmul_weight_backward(dhf_.data() + (size_t) n0 * C, C, logits_.data(), V, Wh, n);
        if (dWh) {
            backend_.gemm(true, false, V, C, n, 1.0f, logits_.data(), V, h, C, 1.0f, dWh, C);
        }
    }
}

void Transformer::backward_layers(const Batch & batch, float * full_grads) {
    const ModelConfig & c  = model_->config();
    const ModelWeights & w = model_->weights();
    const int           N  = B_ * T_, C = c.hidden_size, F = c.intermediate_size, D = c.head_dim, S = c.qkv_dim();
    const AttentionShape shape{B_, T_, c.num_heads, c.num_kv_heads, D, c.sliding_window};
    ParamView           dw{};
    if (full_grads) {
        dw = model_->layout().view(full_grads);
    }
    zero(dx_, (size_t) N * C);
    backend_.rmsnorm_backward(dx_.data(), dw.norm, dhf_.data(), x_final_.data(), w.norm, rstdf_.data(), N, C);
    for (int l = c.num_layers - 1; l >= 0; l--) {
        LayerActs &         a   = acts(l);
        const LayerParams * dwl = full_grads ? &dw.layers[l] : nullptr;
        // Recomputing: the last layer's activations are still in the buffers from the forward.
        if (recomputing_ && l + 1 < c.num_layers) {
            layer_forward(batch, l, xs_[l].data(), nullptr, a);
        }
        // dx_ holds d(layer output); the residual path passes it through unchanged.
        zero(dact_, (size_t) N * F);
        proj_backward(projection(l, DOWN, dwl), a.act.data(), dx_.data(), dact_.data(), a);
        dgu_.resize((size_t) N * 2 * F);
        backend_.swiglu_backward(dgu_.data(), dact_.data(), a.gu.data(), N, F);
        zero(dh_, (size_t) N * C);
        proj_backward(projection(l, GATE_UP, dwl), a.h2.data(), dgu_.data(), dh_.data(), a);
        backend_.rmsnorm_backward(dx_.data(), full_grads ? dwl->ln2 : nullptr, dh_.data(), a.x2.data(),
                                  w.layers[l].ln2, a.rstd2.data(), N, C);
        // dx_ now holds d(x2)
        zero(dattn_, (size_t) N * c.q_dim());
        proj_backward(projection(l, O, dwl), a.attn.data(), dx_.data(), dattn_.data(), a);
        zero(dqkv_, (size_t) N * S);
        backend_.attention_backward(dqkv_.data(), dattn_.data(), a.qkv.data(), a.lse.data(),
                                    batch.attention_mask.data(), doc_start(batch), shape);
        backend_.rope(dqkv_.data(), N, S, c.num_heads, D, cos_.data(), sin_.data(), true);
        backend_.rope(dqkv_.data() + c.q_dim(), N, S, c.num_kv_heads, D, cos_.data(), sin_.data(), true);
        zero(dh_, (size_t) N * C);
        proj_backward(projection(l, QKV, dwl), a.h1.data(), dqkv_.data(), dh_.data(), a);
        backend_.rmsnorm_backward(dx_.data(), full_grads ? dwl->ln1 : nullptr, dh_.data(), xs_[l].data(),
                                  w.layers[l].ln1, a.rstd1.data(), N, C);
    }
    if (full_grads) {
        backend_.embedding_backward(dw.embed, dx_.data(), batch.input_ids.data(), N, C);
    }
}

size_t Transformer::activation_bytes() const {
    size_t floats = x_final_.capacity() + hf_.capacity() + rstdf_.capacity() + lse_.capacity() + cos_.capacity() +
                    sin_.capacity();
    for (const std::vector<float> & x : xs_) {
        floats += x.capacity();
    }
    size_t bytes = 0;
    for (const LayerActs & a : layers_) {
        floats += a.h1.capacity() + a.rstd1.capacity() + a.qkv.capacity() + a.lse.capacity() + a.attn.capacity() +
                  a.x2.capacity() + a.h2.capacity() + a.rstd2.capacity() + a.gu.capacity() + a.act.capacity();
        for (int t = 0; t < TARGET_COUNT; t++) {
            floats += a.lora_h[t].capacity() + a.lora_x[t].capacity();
            bytes += a.lora_keep[t].capacity();
        }
    }
    return bytes + floats * sizeof(float);
}

namespace {

// Input features of each LoRA target's module: q, k, v, gate, up read [N, C]; o reads [N, Hq*D];
// down reads [N, F].
int lora_target_inputs(const ModelConfig & c, int target) {
    return target == TARGET_O ? c.q_dim() : target == TARGET_DOWN ? c.intermediate_size : c.hidden_size;
}

}  // namespace

size_t Transformer::planned_activation_bytes(const ModelConfig & c, int B, int T, const LoraConfig * lora,
                                             bool recompute, bool dropout) {
    const size_t N = (size_t) B * T, C = c.hidden_size, F = c.intermediate_size;
    // x_final_, hf_ [N, C]; rstdf_, lse_ [N]; cos_, sin_ [N, D/2]; xs_ L x [N, C]
    size_t floats = 2 * N * C + 2 * N + N * (size_t) (c.head_dim / 2) * 2 + (size_t) c.num_layers * N * C;
    // One layer's LayerActs: h1, x2, h2 [N, C]; rstd1, rstd2 [N]; qkv [N, S]; lse [B, Hq, T];
    // attn [N, Hq*D]; gu [N, 2F]; act [N, F]; per LoRA target lora_h [N, r] and, with dropout,
    // lora_x [N, in] (floats) and lora_keep [N, in] (bytes).
    size_t layer_floats = 3 * N * C + 2 * N + N * c.qkv_dim() + N * c.num_heads + N * c.q_dim() + 3 * N * F;
    size_t layer_bytes  = 0;
    for (int t = 0; lora && t < TARGET_COUNT; t++) {
        if (!lora->targets[t]) {
            continue;
        }
        layer_floats += N * lora->r;
        if (dropout) {
            layer_floats += N * lora_target_inputs(c, t);
            layer_bytes += N * lora_target_inputs(c, t);
        }
    }
    const size_t layers = recompute ? 1 : c.num_layers;
    return (floats + layers * layer_floats) * sizeof(float) + layers * layer_bytes;
}

size_t Transformer::planned_scratch_bytes(const ModelConfig & c, int B, int T, const LoraConfig * lora, bool dropout) {
    const size_t N = (size_t) B * T, C = c.hidden_size, F = c.intermediate_size;
    // logp_ [N]; logits_ [min(N, chunk), V]; dhf_, dx_, dh_ [N, C]; dqkv_ [N, S]; dattn_ [N, Hq*D];
    // dgu_ [N, 2F]; dact_ [N, F]
    size_t floats = N + std::min(N, (size_t) head_chunk_tokens(c.vocab_size)) * c.vocab_size + 3 * N * C +
                    N * c.qkv_dim() + N * c.q_dim() + 3 * N * F;
    // dlora_h_ [N, r]; with dropout dlora_x_ [N, in] for the widest input among the targets.
    int widest = 0;
    for (int t = 0; lora && t < TARGET_COUNT; t++) {
        if (lora->targets[t]) {
            widest = std::max(widest, lora_target_inputs(c, t));
        }
    }
    if (lora && widest > 0) {
        floats += N * lora->r + (dropout ? N * widest : 0);
    }
    return floats * sizeof(float);
}

const std::vector<float> & Transformer::forward(const Batch & batch, const LoraAdapter * adapter, float * logits_out) {
    prepare(batch, adapter);
    run_layers(batch);
    head(batch, nullptr, nullptr, logits_out);
    return logp_;
}

void Transformer::backward(const Batch & batch, const LoraAdapter * adapter, const float * dlogp, GradBuffers grads) {
    if (adapter != adapter_ || batch.B != B_ || batch.T != T_) {
        throw RuntimeFailure("Transformer::backward: call forward() on the same batch and adapter first");
    }
    lora_grads_ = adapter ? grads.lora : nullptr;
    head(batch, dlogp, grads.full, nullptr);  // recomputes the logits chunk by chunk
    backward_layers(batch, grads.full);
    lora_grads_ = nullptr;
}

const std::vector<float> & Transformer::forward_backward(const Batch & batch, const LoraAdapter * adapter,
                                                         const float * dlogp, GradBuffers grads) {
    prepare(batch, adapter);
    run_layers(batch);
    lora_grads_ = adapter ? grads.lora : nullptr;
    head(batch, dlogp, grads.full, nullptr);
    backward_layers(batch, grads.full);
    lora_grads_ = nullptr;
    return logp_;
}

}  // namespace paft
