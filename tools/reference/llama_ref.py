"""Plain PyTorch reference of HF transformers' LlamaForCausalLM / MistralForCausalLM /
Qwen2ForCausalLM, with PEFT-style LoRA, used as the test oracle for paft.

Everything runs in one compute dtype (float64 for the parity cases, float32 for the speed
benchmark); gradients come from autograd. Module and parameter names equal the Hugging Face
names, so `model.state_dict()` keys are the checkpoint keys, and a LoRA parameter's PEFT key
is "base_model.model." + its name.

Shapes: B batch, T sequence, C hidden, F intermediate, V vocabulary, Hq / Hkv query / key-value
heads, D head dimension, r LoRA rank.

Choices where HF leaves room (see also make_cases.py):
  * RMSNorm, softmax and the loss are computed in the model dtype. (HF upcasts RMSNorm and
    softmax to float32, which for a float64 model would *lose* precision; for float32 it is
    the same thing.)
  * A query with no visible key (a left-padding pad) outputs zeros instead of HF's uniform
    average over masked keys; such positions never carry a label.
  * RoPE cos/sin are computed in float32 and then cast to the model dtype, exactly like HF.
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import st

IGNORE_INDEX = -100

_ARCHS = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}


# ----------------------------------------------------------------------------- config


class ModelConfig:
    """The config.json fields the forward pass depends on, with HF's per-architecture defaults."""

    def __init__(self, d):
        archs = d.get("architectures") or []
        if archs:
            if archs[0] not in _ARCHS:
                raise ValueError(f"unsupported architecture {archs[0]}")
            self.arch = _ARCHS[archs[0]]
        else:
            self.arch = d["model_type"]
        if self.arch not in ("llama", "mistral", "qwen2"):
            raise ValueError(f"unsupported model_type {self.arch}")
        self.hidden_size = d["hidden_size"]
        self.intermediate_size = d["intermediate_size"]
        self.num_hidden_layers = d["num_hidden_layers"]
        self.num_attention_heads = d["num_attention_heads"]
        self.num_key_value_heads = d.get("num_key_value_heads") or self.num_attention_heads
        # head_dim may be absent or null: then hidden / heads (HF: getattr(..) or hidden // heads)
        self.head_dim = d.get("head_dim") or self.hidden_size // self.num_attention_heads
        self.vocab_size = d["vocab_size"]
        self.rms_norm_eps = d.get("rms_norm_eps", 1e-6)
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.rope_scaling = d.get("rope_scaling")
        self.tie_word_embeddings = bool(d.get("tie_word_embeddings", False))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")

        # Which projections carry a bias, per architecture.
        if self.arch == "llama":
            ab = bool(d.get("attention_bias", False))
            self.qkv_bias, self.o_bias = ab, ab  # Llama's attention_bias covers o_proj as well
            self.mlp_bias = bool(d.get("mlp_bias", False))
        elif self.arch == "qwen2":
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
        else:  # mistral: no biases at all
            self.qkv_bias, self.o_bias, self.mlp_bias = False, False, False

        # Sliding-window attention: query i sees key j only if i - j < window.
        if self.arch == "mistral":
            self.sliding_window = d.get("sliding_window", 4096)  # MistralConfig default
        elif self.arch == "qwen2" and d.get("use_sliding_window", False):
            # Qwen2 applies the window only to some layers (max_window_layers); not modelled.
            raise NotImplementedError("Qwen2 with use_sliding_window=true")
        else:
            self.sliding_window = None

    @classmethod
    def load(cls, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            return cls(json.load(f))


# ----------------------------------------------------------------------------- layers


class Linear(nn.Linear):
    """nn.Linear with an optional LoRA branch (PEFT semantics, dropout 0):
    y = x W^T + b + scaling * (x A^T) B^T,  A [r, in], B [out, r]."""

    def __init__(self, in_features, out_features, bias, dtype):
        super().__init__(in_features, out_features, bias=bias, dtype=dtype)
        self.lora_A = None
        self.lora_B = None
        self.lora_scaling = 0.0

    def add_lora(self, r, scaling):
        dt = self.weight.dtype
        self.lora_A = nn.Linear(self.in_features, r, bias=False, dtype=dt)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, dtype=dt)
        self.lora_scaling = scaling

    def forward(self, x):  # x [..., in] -> [..., out]
        y = F.linear(x, self.weight, self.bias)
        if self.lora_A is not None:
            y = y + self.lora_B(self.lora_A(x)) * self.lora_scaling
        return y


class RMSNorm(nn.Module):
    def __init__(self, size, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, dtype=dtype))
        self.eps = eps

    def forward(self, x):  # x [B, T, C]
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x * rstd * self.weight


def rope_inv_freq(cfg):
    """[D/2] float32 inverse frequencies, including llama3 scaling, computed as HF does
    (float32 throughout, so the engine can reproduce them bit for bit)."""
    D = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.rope_scaling
    rope_type = (rs.get("rope_type") or rs.get("type")) if rs else "default"
    if rope_type == "default":
        return inv_freq
    if rope_type != "llama3":
        raise NotImplementedError(f"rope_scaling type {rope_type}")
    factor = rs["factor"]
    low_ff, high_ff = rs["low_freq_factor"], rs["high_freq_factor"]
    orig = rs["original_max_position_embeddings"]
    low_freq_wavelen = orig / low_ff
    high_freq_wavelen = orig / high_ff
    wavelen = 2 * math.pi / inv_freq
    # long wavelengths (low frequencies) are slowed down by `factor` ...
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # ... short ones are kept, and the band between is interpolated between the two.
    smooth = (orig / wavelen - low_ff) / (high_ff - low_ff)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


def llama3_bands(cfg):
    """Per-frequency band of the llama3 scaling: 'high' (kept), 'medium' (smoothed), 'low' (/factor)."""
    rs = cfg.rope_scaling
    D = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    wavelen = 2 * math.pi / inv_freq
    orig = rs["original_max_position_embeddings"]
    lo, hi = orig / rs["low_freq_factor"], orig / rs["high_freq_factor"]
    return ["low" if w > lo else "high" if w < hi else "medium" for w in wavelen.tolist()]


def rope_cos_sin(inv_freq, position_ids, dtype):
    """position_ids [B, T] -> cos, sin [B, T, D] in `dtype` (computed in float32 first)."""
    freqs = position_ids.float()[:, :, None] * inv_freq[None, None, :]  # [B, T, D/2] float32
    emb = torch.cat([freqs, freqs], dim=-1)  # [B, T, D]: HF's half-split layout
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):  # x [..., D]
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):  # x [B, H, T, D], cos/sin [B, T, D]
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


def attention_mask_bias(attention_mask, sliding_window, dtype):
    """attention_mask [B, T] (1 = real token) ->
    bias [B, 1, T, T] additive (0 where query i may see key j, dtype min elsewhere) and
    has_key [B, 1, T, 1] (0 for a query that sees no key at all).

    A finite minimum rather than -inf keeps fully masked rows free of NaN (also in the
    backward pass); their softmax is then multiplied by has_key = 0 to output zeros."""
    T = attention_mask.shape[1]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i  # causal
    if sliding_window:
        allowed = allowed & (i - j < sliding_window)
    allowed = allowed[None, None] & attention_mask.bool()[:, None, None, :]  # key padding
    bias = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    has_key = allowed.any(dim=-1, keepdim=True).to(dtype)
    return bias, has_key


class Attention(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        C, D, Hq, Hkv = cfg.hidden_size, cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.Hq, self.Hkv, self.D = Hq, Hkv, D
        self.q_proj = Linear(C, Hq * D, cfg.qkv_bias, dtype)
        self.k_proj = Linear(C, Hkv * D, cfg.qkv_bias, dtype)
        self.v_proj = Linear(C, Hkv * D, cfg.qkv_bias, dtype)
        self.o_proj = Linear(Hq * D, C, cfg.o_bias, dtype)

    def forward(self, x, cos, sin, bias, has_key):  # x [B, T, C] -> [B, T, C]
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.Hq, self.D).transpose(1, 2)  # [B, Hq, T, D]
        k = self.k_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)  # [B, Hkv, T, D]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # GQA: query head h reads key/value head h // (Hq / Hkv)
        rep = self.Hq // self.Hkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)  # [B, Hq, T, D]
            v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.D**-0.5 + bias  # [B, Hq, T, T]
        probs = torch.softmax(scores, dim=-1) * has_key
        out = torch.matmul(probs, v)  # [B, Hq, T, D]
        out = out.transpose(1, 2).reshape(B, T, self.Hq * self.D)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        C, Fi, b = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = Linear(C, Fi, b, dtype)
        self.up_proj = Linear(C, Fi, b, dtype)
        self.down_proj = Linear(Fi, C, b, dtype)

    def forward(self, x):  # x [B, T, C] -> [B, T, C]; SwiGLU
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.self_attn = Attention(cfg, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.mlp = MLP(cfg, dtype)

    def forward(self, x, cos, sin, bias, has_key):  # pre-norm residual block, x [B, T, C]
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, bias, has_key)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):  # HF's LlamaModel: the "model." prefix of the parameter names
    def __init__(self, cfg, dtype):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, dtype=dtype)
        self.layers = nn.ModuleList([DecoderLayer(cfg, dtype) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)


class CausalLM(nn.Module):
    def __init__(self, cfg, dtype=torch.float64):
        super().__init__()
        self.cfg = cfg
        self.dtype = dtype
        self.model = Backbone(cfg, dtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, dtype=dtype)
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def forward(self, input_ids, attention_mask, position_ids):
        """input_ids, attention_mask, position_ids [B, T] int -> logits [B, T, V]."""
        cos, sin = rope_cos_sin(self.inv_freq, position_ids, self.dtype)
        bias, has_key = attention_mask_bias(attention_mask, self.cfg.sliding_window, self.dtype)
        x = self.model.embed_tokens(input_ids)  # [B, T, C]
        for layer in self.model.layers:
            x = layer(x, cos, sin, bias, has_key)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.cfg.tie_word_embeddings else self.lm_head.weight
        return F.linear(x, head)  # [B, T, V]

    # -- LoRA ---------------------------------------------------------------------------

    def lora_targets(self, target_modules):
        """(name, Linear) of every projection whose last name component is in target_modules."""
        out = []
        for name, mod in self.named_modules():
            if isinstance(mod, Linear) and name.rsplit(".", 1)[-1] in target_modules:
                out.append((name, mod))
        return out

    def add_lora(self, r, alpha, target_modules, use_rslora=False):
        """Adds LoRA to the targeted projections and freezes everything else.
        Initialisation is PEFT's default: A ~ kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(in)), B = 0."""
        scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        targets = self.lora_targets(target_modules)
        if not targets:
            raise ValueError(f"no module matches {target_modules}")
        for p in self.parameters():
            p.requires_grad_(False)
        for _, mod in targets:
            mod.add_lora(r, scaling)
            nn.init.kaiming_uniform_(mod.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(mod.lora_B.weight)

    def lora_parameters(self):
        """{PEFT key: parameter} in module order, e.g.
        base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight."""
        return {"base_model.model." + n: p for n, p in self.named_parameters() if ".lora_" in n}

    def base_parameters(self):
        """{HF name: parameter} of the base model (what a checkpoint holds)."""
        return {n: p for n, p in self.named_parameters() if ".lora_" not in n}


# ----------------------------------------------------------------------------- loss


def causal_lm_loss(logits, labels):
    """HF's causal-LM loss: logits[:, t] predicts labels[:, t+1]; mean over targets != -100."""
    # Shift the labels rather than the logits (as current HF does): no copy of the big logits.
    V = logits.shape[-1]
    shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # [B, T]; last position predicts nothing
    return F.cross_entropy(logits.reshape(-1, V), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="mean")


def token_logprobs(logits, labels):
    """[B, T]: at t < T-1, log p(labels[t+1] | ..t) when that label is not ignored, else 0; 0 at T-1."""
    lp = torch.log_softmax(logits[:, :-1], dim=-1)  # [B, T-1, V]
    tgt = labels[:, 1:]
    valid = tgt != IGNORE_INDEX
    g = lp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
    g = torch.where(valid, g, torch.zeros_like(g))
    return torch.cat([g, torch.zeros_like(g[:, :1])], dim=1)


# ----------------------------------------------------------------------------- I/O


def load_model(model_dir, dtype=torch.float64):
    """Builds the model from a HF directory; stored values (bf16/f16/f32) are upcast to `dtype`."""
    cfg = ModelConfig.load(model_dir)
    model = CausalLM(cfg, dtype)
    weights = st.load_dir(model_dir)
    params = model.base_parameters()
    for name in list(weights):
        if name.endswith("rotary_emb.inv_freq"):  # old checkpoints store it; recomputed here
            del weights[name]
    missing = sorted(set(params) - set(weights))
    unexpected = sorted(set(weights) - set(params))
    if missing or unexpected:
        raise ValueError(f"{model_dir}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, p in params.items():
            w = weights[name]
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"{name}: shape {list(w.shape)}, expected {list(p.shape)}")
            p.copy_(w.to(dtype))
    return model


def load_adapter(model, adapter_dir):
    """Adds the PEFT LoRA adapter stored in adapter_dir (config + weights) to `model`."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        acfg = json.load(f)
    if acfg.get("peft_type", "LORA") != "LORA":
        raise ValueError("only LORA adapters")
    model.add_lora(acfg["r"], acfg["lora_alpha"], acfg["target_modules"], acfg.get("use_rslora", False))
    weights = st.load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    params = model.lora_parameters()
    if set(weights) != set(params):
        raise ValueError(f"adapter keys differ: {sorted(set(weights) ^ set(params))[:5]}")
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(weights[key].to(p.dtype))
    return acfg
