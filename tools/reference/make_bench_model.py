#!/usr/bin/python3
"""Writes a random HF-style model directory and a batch file for speed benchmarks.

    /usr/bin/python3 tools/reference/make_bench_model.py --out DIR \
        [--arch llama] [--hidden 256] [--layers 8] [--intermediate 688] [--vocab 32000] \
        [--heads 8] [--kv-heads 8] [--dtype float32|bfloat16] [--batch 4] [--seq 256] [--seed 0]

Produces DIR/model/{config.json, model.safetensors} and DIR/batch.json (no padding,
position_ids 0..T-1, labels = input_ids), the formats make_cases.py uses.
"""

import argparse
import json
import os
import sys

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

ARCH_NAMES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="llama", choices=sorted(ARCH_NAMES))
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=688)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    C, Fi, V, H = a.hidden, a.intermediate, a.vocab, a.heads
    Hkv = a.kv_heads or H
    D = C // H
    cfg = {
        "architectures": [ARCH_NAMES[a.arch]], "model_type": a.arch, "hidden_act": "silu",
        "hidden_size": C, "intermediate_size": Fi, "num_hidden_layers": a.layers,
        "num_attention_heads": H, "num_key_value_heads": Hkv, "vocab_size": V,
        "max_position_embeddings": max(2048, a.seq), "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": a.dtype,
    }
    if a.arch == "mistral":
        cfg["sliding_window"] = None
    g = torch.Generator().manual_seed(a.seed)

    def lin(out_f, in_f):
        return torch.randn(out_f, in_f, generator=g) / in_f**0.5

    w = {"model.embed_tokens.weight": 0.25 * torch.randn(V, C, generator=g)}
    for i in range(a.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
        w[p + "self_attn.q_proj.weight"] = lin(H * D, C)
        w[p + "self_attn.k_proj.weight"] = lin(Hkv * D, C)
        w[p + "self_attn.v_proj.weight"] = lin(Hkv * D, C)
        if a.arch == "qwen2":
            for n, size in (("q", H * D), ("k", Hkv * D), ("v", Hkv * D)):
                w[p + f"self_attn.{n}_proj.bias"] = 0.1 * torch.randn(size, generator=g)
        w[p + "self_attn.o_proj.weight"] = lin(C, H * D)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
        w[p + "mlp.gate_proj.weight"] = lin(Fi, C)
        w[p + "mlp.up_proj.weight"] = lin(Fi, C)
        w[p + "mlp.down_proj.weight"] = lin(C, Fi)
    w["model.norm.weight"] = 1 + 0.1 * torch.randn(C, generator=g)
    w["lm_head.weight"] = lin(V, C)

    mdir = os.path.join(a.out, "model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    dt = torch.float32 if a.dtype == "float32" else torch.bfloat16
    st.save_file(w, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"}, dtype=dt)

    ids = torch.randint(3, V, (a.batch, a.seq), generator=g)
    batch = {
        "input_ids": ids.tolist(),
        "attention_mask": [[1] * a.seq for _ in range(a.batch)],
        "position_ids": [list(range(a.seq)) for _ in range(a.batch)],
        "labels": ids.tolist(),
    }
    with open(os.path.join(a.out, "batch.json"), "w") as f:
        json.dump(batch, f)
        f.write("\n")
    n = sum(t.numel() for t in w.values())
    print(f"wrote {mdir} ({n / 1e6:.1f}M parameters, {a.dtype}) and {a.out}/batch.json ({a.batch}x{a.seq})")


if __name__ == "__main__":
    main()
