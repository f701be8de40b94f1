#!/usr/bin/python3
"""PyTorch peer of paft's generation benchmark (bench/bench_generate.cpp): greedy decoding with a
key/value cache, as transformers' generate() runs it, in eager PyTorch on the CPU, float32.

    /usr/bin/python3 bench/torch_generate.py --model DIR --prompts PROMPTS.json --new-tokens N \
        --threads T [--repeats R]

PROMPTS.json is a list of B token-id lists of one length (no padding needed: the batch is one
[B, P] prefill, then one [B, 1] step per new token). The model is tools/reference/llama_ref.py's
(HF semantics: nn.Linear projections, RMSNorm, rotate-half RoPE), run with a cache the way HF's
DynamicCache works: each layer's keys (after RoPE) and values are concatenated to the cache
(torch.cat) at every step; attention is batched matmuls with a causal mask for the prefill; only
the last position goes through the LM head (transformers' num_logits_to_keep=1). No EOS: every
sequence gets N new tokens.

Timing: one short warm-up generation, then R times (fastest kept): a prefill alone (the first new
token) and a whole generation. The last stdout line is one JSON object:
  {"seconds": whole generation, "prefill_s": prefill and first token, "tokens": [[B x N ids]],
   "threads", "torch": version}
"""

import argparse
import json
import os
import sys
import time

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))

from llama_ref import apply_rope, load_model, rope_cos_sin  # noqa: E402


def forward(model, ids, start, cache):
    """ids [B, T] at positions start.. start+T-1; cache: per layer (keys, values) [B, Hkv, S, D] or
    None, replaced by the extended ones. Returns the last position's logits [B, V]."""
    B, T = ids.shape
    cfg = model.cfg
    pos = torch.arange(start, start + T)[None].expand(B, T)
    cos, sin = rope_cos_sin(model.inv_freq, pos, model.dtype)
    x = model.model.embed_tokens(ids)  # [B, T, C]
    mask = None
    if T > 1:  # the prefill: query i (position start + i) sees keys 0 .. start + i
        i = torch.arange(T)[:, None]
        j = torch.arange(start + T)[None, :]
        mask = torch.zeros(T, start + T, dtype=model.dtype).masked_fill(j > start + i, float("-inf"))
    for layer_index, layer in enumerate(model.model.layers):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        q = a.q_proj(h).view(B, T, a.Hq, a.D).transpose(1, 2)  # [B, Hq, T, D]
        k = a.k_proj(h).view(B, T, a.Hkv, a.D).transpose(1, 2)  # [B, Hkv, T, D]
        v = a.v_proj(h).view(B, T, a.Hkv, a.D).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache[layer_index] is not None:
            k = torch.cat([cache[layer_index][0], k], dim=2)
            v = torch.cat([cache[layer_index][1], v], dim=2)
        cache[layer_index] = (k, v)
        rep = a.Hq // a.Hkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * a.D**-0.5  # [B, Hq, T, S]
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B, Hq, T, D]
        x = x + a.o_proj(out.transpose(1, 2).reshape(B, T, a.Hq * a.D))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    x = model.model.norm(x[:, -1])  # [B, C]
    head = model.model.embed_tokens.weight if cfg.tie_word_embeddings else model.lm_head.weight
    return torch.nn.functional.linear(x, head)  # [B, V]


def generate(model, prompts, new_tokens):
    """Greedy: [B, new_tokens] ids."""
    ids = torch.tensor(prompts)
    cache = [None] * len(model.model.layers)
    out = []
    with torch.no_grad():
        logits = forward(model, ids, 0, cache)
        start = ids.shape[1]
        for step in range(new_tokens):
            token = torch.argmax(logits, dim=-1)  # [B]
            out.append(token)
            if step + 1 == new_tokens:
                break
            logits = forward(model, token[:, None], start, cache)
            start += 1
    return torch.stack(out, dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, torch.float32)
    model.eval()
    with open(args.prompts) as f:
        prompts = json.load(f)

    generate(model, prompts, 4)  # warm-up
    prefill_s = seconds = float("inf")
    tokens = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        generate(model, prompts, 1)
        prefill_s = min(prefill_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        tokens = generate(model, prompts, args.new_tokens)
        seconds = min(seconds, time.perf_counter() - t0)
    print(json.dumps(dict(seconds=seconds, prefill_s=prefill_s, tokens=tokens.tolist(), threads=args.threads,
                          torch=torch.__version__)))


if __name__ == "__main__":
    main()
