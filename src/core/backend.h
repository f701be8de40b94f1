// The compute interface between the model and the hardware.
//
// The model code (src/model) calls only these functions; it never touches BLAS or threads
// itself. Every buffer a kernel takes must come from this backend's alloc() (or be filled through
// upload()): on the CPU backend that is host memory, and host vectors may be passed directly; a
// backend with memory of its own (a GPU) would require its own. Weight operands (typed matrices,
// tensor/weight.h) are read in their own type: products never need an f32 copy. Activations are
// row-major f32; shapes use N = tokens (B*T), C = hidden, F = intermediate, V = vocabulary,
// Hq/Hkv = query/key-value heads, D = head dimension, S = row stride of a packed buffer.
// Backward functions ACCUMULATE (+=) into their gradient outputs, so a tensor used twice
// (residual stream, tied embeddings, gradient accumulation) needs no extra code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/weight.h"

namespace paft {

// Attention geometry for one batch: B sequences of T positions, heads packed in a qkv buffer
// of row stride S = (Hq + 2*Hkv)*D: queries at column 0, keys at Hq*D, values at (Hq+Hkv)*D.
struct AttentionShape {
    int B = 0, T = 0, Hq = 0, Hkv = 0, D = 0;
    int sliding_window = 0;  // 0: none; else query i sees key j only if i - j < sliding_window
};

// One sequence's part of attention_cached: the queries of its n new tokens against the keys and
// values of all its positions, which lie in two ranges: a shared prefix (positions [0, P)) and
// the sequence's own cache (positions P + t), whose last n rows are the new tokens' own keys and
// values. Keys are after RoPE; key and value rows are [Hkv*D].
struct CachedSequence {
    const float * q;    // [n, ldq] the new tokens' queries (after RoPE), heads packed Hq*D
    int           ldq;
    float *       out;  // [n, ldo] attention output, heads packed Hq*D
    int           ldo;
    int           n;
    const float * prefix_k;  // [P, Hkv*D] (null when P = 0)
    const float * prefix_v;
    int           P;
    const float * k;  // [len, Hkv*D], len >= n
    const float * v;
    int           len;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char * name() const = 0;
    virtual int          threads() const = 0;

    // Memory the kernels can use: bytes of it, freed with free(); upload/download copy between it
    // and host memory (plain copies on the CPU).
    virtual void * alloc(size_t bytes) = 0;
    virtual void   free(void * ptr) = 0;
    virtual void   upload(void * dst, const void * src, size_t bytes) = 0;
    virtual void   download(void * dst, const void * src, size_t bytes) = 0;

    // y[M, W.rows] (row stride ldy) = x[M, W.cols] (row stride ldx) Wᵀ + beta * y, W in its own
    // type (beta = 0: y is not read). The product of every linear layer.
    virtual void matmul_weight(const float * x, int ldx, const Weight & W, float beta, float * y, int ldy, int M) = 0;
    // dx[M, W.cols] (row stride lddx) += dy[M, W.rows] (row stride lddy) W: the gradient through a
    // weight, frozen or not.
    virtual void matmul_weight_backward(float * dx, int lddx, const float * dy, int lddy, const Weight & W, int M) = 0;

    // C[M,N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; leading dimensions as BLAS.
    virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float * A, int lda,
                      const float * B, int ldb, float beta, float * C, int ldc) = 0;

    // out[N,C] = table[ids[n], :]                       table [V,C] in its own type
    virtual void embedding_forward(float * out, const int32_t * ids, const Weight & table, int N, int C) = 0;
    // dtable[ids[n], :] += dout[n, :]
    virtual void embedding_backward(float * dtable, const float * dout, const int32_t * ids, int N, int C) = 0;

    // out[N,C] = x * rstd * w, rstd[N] = 1/sqrt(mean(x^2) + eps)
    virtual void rmsnorm_forward(float * out, float * rstd, const float * x, const float * w, int N, int C,
                                 float eps) = 0;
    // dx += d(out)/dx^T dout; dw += sum_n dout * x * rstd (dw may be null)
    virtual void rmsnorm_backward(float * dx, float * dw, const float * dout, const float * x, const float * w,
                                  const float * rstd, int N, int C) = 0;

    // y[N,M] += bias[M] broadcast over rows (row stride ldy)
    virtual void add_bias(float * y, const float * bias, int N, int M, int ldy) = 0;
    // dbias[M] += sum over rows of dy[N,M] (row stride ldy)
    virtual void bias_backward(float * dbias, const float * dy, int N, int M, int ldy) = 0;
    // y[n] += x[n] for n < count
    virtual void add(float * y, const float * x, size_t count) = 0;
    // y[n] = x[n] * mask[n] * scale (dropout with a precomputed 0/1 mask)
    virtual void mul_mask(float * y, const float * x, const uint8_t * mask, float scale, size_t count) = 0;

    // Rotate-half RoPE in place on `heads` heads of dimension D in each row of x [N, stride];
    // cos/sin [N, D/2] per token. inverse=true rotates by the negative angle (the backward).
    virtual void rope(float * x, int N, int stride, int heads, int D, const float * cos, const float * sin,
                      bool inverse) = 0;

    // Causal attention with key padding. qkv [B*T, S] (after RoPE), key_mask [B*T] (1 = real),
    // doc_start [B*T] or null: query t sees no key before doc_start[t] (packed examples),
    // out [B*T, Hq*D], lse [B, Hq, T]: each query row's log-sum-exp of its scaled scores, saved so
    // the backward can recompute the attention weights instead of storing [T, T] per head
    // (-inf for a row with no allowed key, whose output is zero).
    virtual void attention_forward(float * out, float * lse, const float * qkv, const int32_t * key_mask,
                                   const int32_t * doc_start, const AttentionShape & shape) = 0;
    // dqkv [B*T, S] += gradients of q, k, v given dout [B*T, Hq*D].
    virtual void attention_backward(float * dqkv, const float * dout, const float * qkv, const float * lse,
                                    const int32_t * key_mask, const int32_t * doc_start,
                                    const AttentionShape & shape) = 0;

    // Causal attention of cached sequences (inference): new token i of a sequence sits at position
    // p = P + len - n + i and sees the keys at positions j <= p (and p - j < sliding_window when
    // sliding_window > 0), softmax scale 1/sqrt(D), as attention_forward. Any number of sequences
    // in one call, so that one-token steps of a batch of sequences run in parallel.
    virtual void attention_cached(const CachedSequence * seqs, int count, int Hq, int Hkv, int D,
                                  int sliding_window) = 0;

    // out[N,F] = silu(gu[:, :F]) * gu[:, F:]        gu [N, 2F] (gate then up)
    virtual void swiglu_forward(float * out, const float * gu, int N, int F) = 0;
    // dgu [N, 2F] = gradients of gate and up (overwritten, not accumulated)
    virtual void swiglu_backward(float * dgu, const float * dout, const float * gu, int N, int F) = 0;

    // Row-wise log-softmax statistics of logits [N,V]: lse[n] = logsumexp(logits[n]) and
    // logp[n] = logits[n, target[n]] - lse[n] (0 where target < 0).
    virtual void logsoftmax_target(float * logp, float * lse, const float * logits, const int32_t * targets, int N,
                                   int V) = 0;
    // In place: logits[n,:] <- dlogp[n] * (onehot(target[n]) - softmax(logits[n,:])), the gradient of
    // sum_n dlogp[n] * logp[n] with respect to the logits (rows with target < 0 become 0).
    virtual void logsoftmax_target_backward(float * logits, const float * lse, const int32_t * targets,
                                            const float * dlogp, int N, int V) = 0;
};

// The backend every command runs on, chosen here and only here: today the CPU backend (OpenBLAS
// for products, OpenMP for the rest). `threads` <= 0 keeps the default. Thread counts are
// process-wide (OpenMP's and OpenBLAS's): make one CPU backend per process, or one per thread of
// a run that splits the cores (paft parallel's two branches).
std::unique_ptr<Backend> make_backend(int threads = 0);

}  // namespace paft
