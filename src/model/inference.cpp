#include "model/inference.h"

#include "core/error.h"
#include "model/lora.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace paft {

KvCache::KvCache(const ModelConfig & config, int capacity) : num_layers_(config.num_layers), row_(config.kv_dim()) {
    reserve(capacity);
}

void KvCache::truncate(int length) {
    if (length < 0 || length > length_) {
        throw InputError(fmt::format("KvCache::truncate: length {} outside [0, {}]", length, length_));
    }
    length_ = length;
}

size_t KvCache::bytes() const {
    return (k_.size() + v_.size()) * sizeof(float);
}

float * KvCache::keys(int layer) {
    return k_.data() + (size_t) layer * capacity_ * row_;
}

float * KvCache::values(int layer) {
    return v_.data() + (size_t) layer * capacity_ * row_;
}

const float * KvCache::keys(int layer) const {
    return k_.data() + (size_t) layer * capacity_ * row_;
}

const float * KvCache::values(int layer) const {
    return v_.data() + (size_t) layer * capacity_ * row_;
}

int KvCache::append(int n) {
    const int start = length_;
    if (length_ + n > capacity_) {
        reserve(std::max(length_ + n, 2 * capacity_));  // doubling: amortised copies when decoding
    }
    length_ += n;
    return start;
}

// Reallocates to `capacity` positions per layer, keeping the first length_ rows of each layer.
void KvCache::reserve(int capacity) {
    const size_t       layer = (size_t) capacity * row_, used = (size_t) length_ * row_;
    std::vector<float> k((size_t) num_layers_ * layer), v((size_t) num_layers_ * layer);
    for (int l = 0; l < num_layers_ && used > 0; l++) {
        std::memcpy(k.data() + l * layer, keys(l), used * sizeof(float));
        std::memcpy(v.data() + l * layer, values(l), used * sizeof(float));
    }
    k_.swap(k);
    v_.swap(v);
    capacity_ = capacity;
}

AdaptedModel load_model_with_adapters(const std::string & model_dir, const std::vector<std::string> & adapter_dirs,
                                      const LoadOptions & options) {
    AdaptedModel loaded;
    // Adapters first: they are small, and a bad one is refused before the model is read.
    const ModelConfig config = load_model_config(model_dir);
    for (const std::string & dir : adapter_dirs) {
        // load() checks every A and B against the model's shapes, naming the adapter's files.
        loaded.adapters.push_back(std::make_shared<const LoraAdapter>(LoraAdapter::load(dir, config)));
    }
    loaded.model = Model::load(model_dir, options);
    return loaded;
}

Decoder::Decoder(Backend & backend, AdaptedModel model)
    : backend_(backend), model_(std::move(model.model)), adapters_(std::move(model.adapters)) {
    for (const auto & adapter : adapters_) {
        if (adapter->layers() != model_->config().num_layers) {
            throw InputError(fmt::format("Decoder: an adapter has {} layers, the model {}", adapter->layers(),
                                         model_->config().num_layers));
        }
    }
}

void Decoder::check_inputs(std::span<const SequenceInput> seqs) const {
    const ModelConfig & c = model_->config();
    if (seqs.empty()) {
        throw InputError("Decoder::forward: no sequences");
    }
    auto fits = [&](const KvCache & cache) { return cache.layers() == c.num_layers && cache.row_size() == c.kv_dim(); };
    for (size_t s = 0; s < seqs.size(); s++) {
        const SequenceInput & in = seqs[s];
        if (!in.cache) {
            throw InputError(fmt::format("Decoder::forward: sequence {} has no cache", s));
        }
        if (in.tokens.empty()) {
            throw InputError(fmt::format("Decoder::forward: sequence {} has no tokens", s));
        }
        if (!fits(*in.cache) || (in.prefix && !fits(*in.prefix))) {
            throw InputError(fmt::format("Decoder::forward: sequence {} has a cache made for another model", s));
        }
        for (size_t i = 0; i < in.tokens.size(); i++) {
            if (in.tokens[i] < 0 || in.tokens[i] >= c.vocab_size) {
                throw InputError(fmt::format("Decoder::forward: sequence {}, token {}: id {} is outside the vocabulary "
                                             "[0, {})", s, i, in.tokens[i], c.vocab_size));
            }
        }
        // The caches written by this call must be distinct, and none may be read as a prefix.
        for (size_t o = 0; o < seqs.size(); o++) {
            if ((o != s && seqs[o].cache == in.cache) || seqs[o].prefix == in.cache) {
                throw InputError(fmt::format("Decoder::forward: the cache of sequence {} is also used by sequence {}",
                                             s, o));
            }
        }
    }
}

void Decoder::linear(int layer, const float * x, const std::vector<WeightSegment> & W, const float * b, int M, int in,
                     int out, std::initializer_list<std::pair<int, int>> targets, float * y) {
    for (const WeightSegment & seg : W) {
        backend_.matmul_weight(x, in, seg.W, 0.0f, y + seg.offset, out, M);
    }
    if (b) {
        backend_.add_bias(y, b, M, out, out);
    }
    for (const auto & adapter : adapters_) {
        for (const auto & [target, offset] : targets) {
            if (adapter->has(layer, target)) {
                apply_lora(backend_, *adapter, layer, target, x, in, M, y + offset, out, lora_h_);
            }
        }
    }
}

// Layer l on the N rows of x_. The last layer keeps only the R rows whose logits are wanted once
// attention has written every row's keys and values: the rest of it serves no later token.
void Decoder::layer_forward(int l, std::span<const SequenceInput> seqs, int N, int R) {
    const ModelConfig & c = model_->config();
    const LayerWeights & w = model_->weights().layers[l];
    const int C = c.hidden_size, F = c.intermediate_size, D = c.head_dim, Q = c.q_dim(), K = c.kv_dim(),
              S = c.qkv_dim();
    // attention block: x += o_proj(attention(rope(qkv_proj(norm(x)))))
    backend_.rmsnorm_forward(h_.data(), rstd_.data(), x_.data(), w.ln1, N, C, c.rms_norm_eps);
    linear(l, h_.data(), stacked_weights({w.q, w.k, w.v}), w.bqkv, N, C, S,
           {{TARGET_Q, 0}, {TARGET_K, Q}, {TARGET_V, Q + K}}, qkv_.data());
    backend_.rope(qkv_.data(), N, S, c.num_heads, D, cos_.data(), sin_.data(), false);
    backend_.rope(qkv_.data() + Q, N, S, c.num_kv_heads, D, cos_.data(), sin_.data(), false);
    int row = 0;
    for (size_t s = 0; s < seqs.size(); s++) {
        const SequenceInput & in = seqs[s];
        const int             n = (int) in.tokens.size(), first = in.cache->length() - n;
        for (int i = 0; i < n; i++) {
            const float * kv = qkv_.data() + (size_t) (row + i) * S + Q;
            std::memcpy(in.cache->keys(l) + (size_t) (first + i) * K, kv, K * sizeof(float));
            std::memcpy(in.cache->values(l) + (size_t) (first + i) * K, kv + K, K * sizeof(float));
        }
        CachedSequence & a = attention_[s];
        a.q        = qkv_.data() + (size_t) row * S;
        a.ldq      = S;
        a.out      = attn_.data() + (size_t) row * Q;
        a.ldo      = Q;
        a.n        = n;
        a.prefix_k = in.prefix ? in.prefix->keys(l) : nullptr;
        a.prefix_v = in.prefix ? in.prefix->values(l) : nullptr;
        a.P        = in.prefix ? in.prefix->length() : 0;
        a.k        = in.cache->keys(l);
        a.v        = in.cache->values(l);
        a.len      = in.cache->length();
        row += n;
    }
    backend_.attention_cached(attention_.data(), (int) seqs.size(), c.num_heads, c.num_kv_heads, D, c.sliding_window);
    int M = N;
    if (l + 1 == c.num_layers && R < N) {
        // logit_rows_ increases, so moving row logit_rows_[r] up to r never overwrites a row still to move.
        for (int r = 0; r < R; r++) {
            const int from = logit_rows_[r];
            std::memmove(attn_.data() + (size_t) r * Q, attn_.data() + (size_t) from * Q, Q * sizeof(float));
            std::memmove(x_.data() + (size_t) r * C, x_.data() + (size_t) from * C, C * sizeof(float));
        }
        M = R;
    }
    linear(l, attn_.data(), stacked_weights({w.o}), w.bo, M, Q, C, {{TARGET_O, 0}}, h_.data());
    backend_.add(x_.data(), h_.data(), (size_t) M * C);
    // MLP block: x += down(silu(gate(norm(x))) * up(norm(x)))
    backend_.rmsnorm_forward(h_.data(), rstd_.data(), x_.data(), w.ln2, M, C, c.rms_norm_eps);
    linear(l, h_.data(), stacked_weights({w.gate, w.up}), w.bgu, M, C, 2 * F, {{TARGET_GATE, 0}, {TARGET_UP, F}},
           gu_.data());
    backend_.swiglu_forward(act_.data(), gu_.data(), M, F);
    linear(l, act_.data(), stacked_weights({w.down}), w.bdown, M, F, C, {{TARGET_DOWN, 0}}, h_.data());
    backend_.add(x_.data(), h_.data(), (size_t) M * C);
}

const float * Decoder::forward(std::span<const SequenceInput> seqs) {
    check_inputs(seqs);
    const ModelConfig & c = model_->config();
    const ModelWeights & w = model_->weights();
    const int           C = c.hidden_size, V = c.vocab_size;
    int                 N = 0, R = 0;
    for (const SequenceInput & in : seqs) {
        N += (int) in.tokens.size();
        R += in.all_logits ? (int) in.tokens.size() : 1;
    }
    ids_.resize(N);
    positions_.resize(N);
    logit_rows_.resize(R);
    attention_.resize(seqs.size());
    int row = 0, r = 0;
    for (const SequenceInput & in : seqs) {
        const int n = (int) in.tokens.size();
        const int first = (in.prefix ? in.prefix->length() : 0) + in.cache->append(n);  // position of token 0
        for (int i = 0; i < n; i++) {
            ids_[row + i]       = in.tokens[i];
            positions_[row + i] = first + i;
            if (in.all_logits || i + 1 == n) {
                logit_rows_[r++] = row + i;
            }
        }
        row += n;
    }
    rope_tables(model_->inv_freq(), positions_.data(), N, cos_, sin_);
    x_.resize((size_t) N * C);
    h_.resize((size_t) N * C);
    rstd_.resize(N);
    qkv_.resize((size_t) N * c.qkv_dim());
    attn_.resize((size_t) N * c.q_dim());
    gu_.resize((size_t) N * 2 * c.intermediate_size);
    act_.resize((size_t) N * c.intermediate_size);
    logits_.resize((size_t) R * V);

    backend_.embedding_forward(x_.data(), ids_.data(), w.embed, N, C);
    for (int l = 0; l < c.num_layers; l++) {
        layer_forward(l, seqs, N, R);
    }
    // x_ holds the R rows that need logits
    backend_.rmsnorm_forward(h_.data(), rstd_.data(), x_.data(), w.norm, R, C, c.rms_norm_eps);
    backend_.matmul_weight(h_.data(), C, w.lm_head, 0.0f, logits_.data(), V, R);
    return logits_.data();
}

}  // namespace paft
