#!/usr/bin/python3
"""Checks the reference itself (run: /usr/bin/python3 tools/reference/selfcheck.py).

  1. gradcheck (float64 finite differences) of the loss w.r.t. every base and LoRA parameter
     on tiny Llama (biases, GQA, llama3 RoPE, left padding), Mistral (sliding window, right
     padding) and Qwen2 (tied) instances;
  2. the vectorised attention against a per-query loop written from the definitions;
  3. the llama3 frequency bands of the llama3_rope_f16 case, and inv_freq per band;
  4. loss == -mean of the per-token log-probs, LoRA with B = 0 == base model;
  5. safetensors round trips (every dtype, sharded).
"""

import math
import os
import sys
import tempfile

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
from torch.nn.utils.stateless import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import st  # noqa: E402
from llama_ref import (  # noqa: E402
    CausalLM,
    ModelConfig,
    causal_lm_loss,
    llama3_bands,
    rope_inv_freq,
    token_logprobs,
)

torch.manual_seed(0)


def tiny_cfg(arch, **kw):
    d = {"architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                            "qwen2": "Qwen2ForCausalLM"}[arch]],
         "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 11, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
    d.update(kw)
    return ModelConfig(d)


def randomize(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.4 * torch.randn_like(p))


def batch(B, T, V, lengths, left):
    mask = torch.zeros(B, T, dtype=torch.int64)
    for b, L in enumerate(lengths):
        if left:
            mask[b, T - L:] = 1
        else:
            mask[b, :L] = 1
    ids = torch.randint(1, V, (B, T)) * mask
    pos = mask.cumsum(-1) - 1
    pos[mask == 0] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, pos, labels


def check_gradcheck():
    setups = [
        ("llama bias/gqa/llama3/left-pad",
         tiny_cfg("llama", attention_bias=True, mlp_bias=True, head_dim=6,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
         ["q_proj", "o_proj", "down_proj"], True, [5, 3]),
        ("mistral window 2/right-pad", tiny_cfg("mistral", sliding_window=2), ["k_proj", "up_proj"], False, [5, 4]),
        ("qwen2 tied", tiny_cfg("qwen2", tie_word_embeddings=True, num_key_value_heads=2),
         ["v_proj", "gate_proj"], False, [5, 5]),
    ]
    for title, cfg, targets, left, lengths in setups:
        model = CausalLM(cfg, torch.float64)
        model.add_lora(2, 3.0, targets, use_rslora=left)
        randomize(model)  # also makes lora_B non-zero
        ids, mask, pos, labels = batch(2, 5, cfg.vocab_size, lengths, left)
        names = [n for n, _ in model.named_parameters()]
        params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]

        def loss_fn(*ps):
            logits = functional_call(model, dict(zip(names, ps)), (ids, mask, pos))
            return causal_lm_loss(logits, labels)

        ok = torch.autograd.gradcheck(loss_fn, params, eps=1e-6, atol=1e-7, rtol=1e-5)
        n = sum(p.numel() for p in params)
        print(f"gradcheck {title}: {'OK' if ok else 'FAIL'} ({n} parameters)")


def naive_attention(attn, x, pos, mask, window, inv_freq):
    """Per (batch, head, query) loop straight from the definitions. x [B, T, C]."""
    B, T, _ = x.shape
    Hq, Hkv, D = attn.Hq, attn.Hkv, attn.D
    q = attn.q_proj(x).view(B, T, Hq, D)
    k = attn.k_proj(x).view(B, T, Hkv, D)
    v = attn.v_proj(x).view(B, T, Hkv, D)

    def rope(vec, p):  # rotate pairs (i, i + D/2) by angle p * inv_freq[i]
        out = vec.clone()
        for i in range(D // 2):
            ang = torch.tensor(float(p), dtype=torch.float32) * inv_freq[i]
            c, s = ang.cos().double(), ang.sin().double()
            a, b = vec[i], vec[i + D // 2]
            out[i] = a * c - b * s
            out[i + D // 2] = b * c + a * s
        return out

    out = torch.zeros(B, T, Hq * D, dtype=x.dtype)
    for b in range(B):
        for h in range(Hq):
            g = h // (Hq // Hkv)
            for i in range(T):
                keys = [j for j in range(T) if j <= i and mask[b, j] == 1 and (not window or i - j < window)]
                if not keys:
                    continue  # no visible key: zeros
                qi = rope(q[b, i, h], pos[b, i])
                s = torch.stack([rope(k[b, j, g], pos[b, j]) @ qi / math.sqrt(D) for j in keys])
                w = torch.softmax(s, 0)
                out[b, i, h * D:(h + 1) * D] = sum(w[n] * v[b, j, g] for n, j in enumerate(keys))
    return attn.o_proj(out)


def check_attention():
    from llama_ref import attention_mask_bias, rope_cos_sin

    for title, cfg, left in [
        ("llama gqa head_dim!=C/H left-pad", tiny_cfg("llama", num_attention_heads=4, num_key_value_heads=2,
                                                       head_dim=4, attention_bias=True), True),
        ("mistral window 3 right-pad", tiny_cfg("mistral", sliding_window=3), False),
    ]:
        model = CausalLM(cfg, torch.float64)
        randomize(model)
        attn = model.model.layers[0].self_attn
        ids, mask, pos, _ = batch(2, 7, cfg.vocab_size, [7, 4], left)
        x = torch.randn(2, 7, cfg.hidden_size, dtype=torch.float64)
        cos, sin = rope_cos_sin(model.inv_freq, pos, torch.float64)
        bias, has_key = attention_mask_bias(mask, cfg.sliding_window, torch.float64)
        with torch.no_grad():
            fast = attn(x, cos, sin, bias, has_key)
            slow = naive_attention(attn, x, pos, mask, cfg.sliding_window, model.inv_freq)
        err = (fast - slow).abs().max().item()
        assert err < 1e-12, err
        print(f"attention vs per-query loop, {title}: max |diff| {err:.1e} OK")


def check_llama3():
    sys.argv = sys.argv[:1]
    from make_cases import CASES, hf_config

    case = next(c for c in CASES if c["name"] == "llama3_rope_f16")
    cfg = ModelConfig(hf_config(case))
    bands = llama3_bands(cfg)
    assert {"high", "medium", "low"} <= set(bands), bands
    rs = cfg.rope_scaling
    D = cfg.head_dim
    got = rope_inv_freq(cfg).tolist()
    for i, band in enumerate(bands):
        f = 1.0 / cfg.rope_theta ** (2 * i / D)  # float64 recomputation
        if band == "high":
            want = f
        elif band == "low":
            want = f / rs["factor"]
        else:
            smooth = (rs["original_max_position_embeddings"] * f / (2 * math.pi) - rs["low_freq_factor"]) / (
                rs["high_freq_factor"] - rs["low_freq_factor"])
            want = (1 - smooth) * f / rs["factor"] + smooth * f
        assert abs(got[i] - want) <= 1e-6 * want, (i, band, got[i], want)
    print(f"llama3 bands of llama3_rope_f16: {bands} OK")
    # and the brief's original_max_position_embeddings = 8 would have no high band:
    rs8 = dict(rs, original_max_position_embeddings=8)
    cfg8 = ModelConfig(dict(hf_config(case), rope_scaling=rs8))
    print(f"  (with original_max_position_embeddings=8 the bands would be {sorted(set(llama3_bands(cfg8)))})")


def check_loss_and_lora_identity():
    cfg = tiny_cfg("llama", attention_bias=True)
    model = CausalLM(cfg, torch.float64)
    randomize(model)
    ids, mask, pos, labels = batch(3, 6, cfg.vocab_size, [6, 4, 2], False)
    labels[0, :2] = -100
    with torch.no_grad():
        logits = model(ids, mask, pos)
        loss = causal_lm_loss(logits, labels)
        lp = token_logprobs(logits, labels)
        n = (labels[:, 1:] != -100).sum()
        assert abs(loss.item() + lp.sum().item() / n.item()) < 1e-12
        model.add_lora(4, 8, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        assert torch.equal(model(ids, mask, pos), logits)  # B = 0 at PEFT init
    print("loss == -mean(token logprobs); LoRA at PEFT init == base model: OK")


def check_st():
    with tempfile.TemporaryDirectory() as d:
        ts = {
            "f64": torch.randn(3, 4, dtype=torch.float64),
            "f32": torch.randn(5, dtype=torch.float32),
            "f16": torch.randn(2, 3).half(),
            "bf16": torch.randn(7, 1).bfloat16(),
            "i64": torch.arange(6, dtype=torch.int64).reshape(2, 3) - 3,
            "i32": torch.arange(5, dtype=torch.int32) * -7,
            "scalar": torch.tensor(1.5),
        }
        st.save_file(ts, os.path.join(d, "a.safetensors"), metadata={"k": "v"})
        with open(os.path.join(d, "a.safetensors"), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        assert n % 8 == 0
        back = st.load_file(os.path.join(d, "a.safetensors"))
        for k, t in ts.items():
            assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
        assert st.read_header(os.path.join(d, "a.safetensors"))[1] == {"k": "v"}
        big = {f"t{i}": torch.randn(10 + i) for i in range(9)}
        files = st.save_sharded(big, d, "model", 3, dtype=torch.bfloat16)
        back = st.load_dir(d)
        assert len(files) == 3 and all(torch.equal(back[k], big[k].bfloat16()) for k in big)
    print("safetensors round trips (F64 F32 F16 BF16 I64 I32, scalar, 3 shards): OK")


if __name__ == "__main__":
    torch.set_num_threads(1)
    check_st()
    check_llama3()
    check_loss_and_lora_identity()
    check_attention()
    check_gradcheck()
    print("all self-checks passed")
