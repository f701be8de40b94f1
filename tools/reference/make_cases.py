#!/usr/bin/python3
"""Writes the reference cases the paft parity tests compare against.

    /usr/bin/python3 tools/reference/make_cases.py --out DIR [--force]

For each case DIR/<case>/ holds
  model/               config.json + safetensors weights (the case's dtype; one case sharded)
  adapter/             PEFT adapter_config.json + adapter_model.safetensors (F32)
  batch.json           input_ids, attention_mask, position_ids, labels: B lists of length T
  expected.safetensors F64, computed in float64 on exactly the stored values:
      base.logits [B,T,V], base.logprobs [B,T], base.loss [1]   model alone
      lora.logits, lora.logprobs, lora.loss                      model + adapter
      lora.grad.<PEFT key>   d lora.loss / d lora_A, lora_B
      full.grad.<HF name>    d base.loss / d every stored model tensor
and DIR/cases.json lists the case names. Everything is seeded and single-threaded, so the
same scripts always produce the same bytes; when DIR/cases.json is newer than the scripts
the run does nothing.
"""

import argparse
import json
import os
import shutil
import sys

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases_cli  # noqa: E402
import st  # noqa: E402
from llama_ref import (  # noqa: E402
    IGNORE_INDEX,
    CausalLM,
    ModelConfig,
    causal_lm_loss,
    llama3_bands,
    load_adapter,
    load_model,
    token_logprobs,
)

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
STORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ARCH_NAMES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}

# Each case: HF config fields (beyond the common ones), storage, batch layout, adapter.
#   lengths: real tokens per row; padding: "none" | "right" | "left"
CASES = [
    dict(
        name="llama_mha_f32",
        arch="llama",
        config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=100, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
        dtype="float32", shards=1,
        B=3, T=9, lengths=[9, 9, 9], padding="none",
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7, use_rslora=False),
    ),
    dict(
        name="llama_gqa_tied_bf16",
        arch="llama",
        config=dict(hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=110, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=True, attention_bias=False, mlp_bias=False),
        dtype="bfloat16", shards=1,
        B=3, T=11, lengths=[11, 7, 4], padding="right",
        lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], use_rslora=False),
    ),
    dict(
        name="llama3_rope_f16",
        arch="llama",
        # head_dim 16 with hidden 48 / 4 heads: the attention width (64) differs from hidden.
        # original_max_position_embeddings 48 (not 8): with head_dim 16 the shortest wavelength
        # is 2*pi, so 8/high_freq_factor = 2 would leave the "high" band empty; 48 gives bands
        # high (wavelen 6.3 < 12), medium (32.4 in [12, 48]) and low (>= 167 > 48).
        config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, vocab_size=128, rms_norm_eps=1e-5,
                    rope_theta=500000.0,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=48),
                    tie_word_embeddings=False, attention_bias=True, mlp_bias=True),
        dtype="float16", shards=1,
        B=3, T=16, lengths=[16, 12, 7], padding="left",
        lora=dict(r=4, lora_alpha=8, target_modules=["o_proj", "gate_proj", "up_proj", "down_proj"],
                  use_rslora=True),
    ),
    dict(
        name="mistral_swa_sharded",
        arch="mistral",
        # head_dim null, as in some Mistral configs: falls back to hidden / heads.
        config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=None, vocab_size=120, rms_norm_eps=1e-5,
                    rope_theta=10000.0, sliding_window=4, tie_word_embeddings=False),
        dtype="float32", shards=3,
        B=3, T=12, lengths=[12, 10, 6], padding="right",
        lora=dict(r=4, lora_alpha=8, target_modules=["k_proj", "o_proj", "down_proj"], use_rslora=False),
    ),
    dict(
        name="qwen2_bias_tied",
        arch="qwen2",
        # use_sliding_window false as in released Qwen2 configs; the window is large anyway, so
        # HF versions that (wrongly) applied it regardless give the same result.
        config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
                    num_key_value_heads=2, vocab_size=130, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768,
                    max_window_layers=2),
        dtype="bfloat16", shards=1,
        B=3, T=10, lengths=[10, 10, 10], padding="none",
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7, use_rslora=False),
    ),
    dict(
        # Long enough for several of paft's 64-query attention blocks, with a window that
        # reaches back across a block boundary.
        name="mistral_long_window",
        arch="mistral",
        config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=8, vocab_size=100, rms_norm_eps=1e-5,
                    rope_theta=10000.0, sliding_window=70, tie_word_embeddings=False,
                    max_position_embeddings=256),
        dtype="float32", shards=1,
        B=2, T=150, lengths=[150, 131], padding="right",
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7, use_rslora=False),
    ),
]

TRAIN_STEPS = 5  # AdamW steps of the training-trajectory check (lr, betas, eps, decay: torch's, below)
TRAIN_LR = 1e-2
PROMPT_ROW = 1  # this row's first 2 real tokens are a masked prompt (label -100)
PAD_ID = 0


def hf_config(case):
    c = {
        "architectures": [ARCH_NAMES[case["arch"]]],
        "model_type": case["arch"],
        "hidden_act": "silu",
        "max_position_embeddings": 64,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "attention_dropout": 0.0,
        "rope_scaling": None,
        "use_cache": True,
        "torch_dtype": case["dtype"],
        "transformers_version": "4.46.0",
    }
    c.update(case["config"])
    return c


def random_weights(model, gen):
    """{HF name: float64 tensor}: projections ~ N(0, 1/in), embeddings N(0, 0.25^2),
    norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2)."""
    out = {}
    for name, p in model.base_parameters().items():
        z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if name.endswith("norm.weight"):
            w = 1.0 + 0.1 * z
        elif name.endswith(".bias"):
            w = 0.1 * z
        elif name == "model.embed_tokens.weight":
            w = 0.25 * z
        else:  # [out, in] projection or lm_head
            w = z / p.shape[1] ** 0.5
        out[name] = w
    return out


def make_batch(case, gen):
    B, T, V = case["B"], case["T"], case["config"]["vocab_size"]
    ids = torch.randint(3, V, (B, T), generator=gen)
    mask = torch.zeros(B, T, dtype=torch.int64)
    for b, L in enumerate(case["lengths"]):
        if case["padding"] == "left":
            mask[b, T - L:] = 1
        else:
            mask[b, :L] = 1
    ids[mask == 0] = PAD_ID
    pos = mask.cumsum(-1) - 1
    pos[mask == 0] = 1  # HF generate convention for pad positions
    labels = ids.clone()
    labels[mask == 0] = IGNORE_INDEX
    # With left padding a row's first real token would be predicted from a pad position, whose
    # output depends on how a query with no visible key is treated; no trainer scores it.
    if case["padding"] == "left":
        for b, L in enumerate(case["lengths"]):
            if L < T:
                labels[b, T - L] = IGNORE_INDEX
    real = mask[PROMPT_ROW].nonzero()[:, 0]
    labels[PROMPT_ROW, real[:2]] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "labels": labels}


def write_model(case, mdir, gen):
    """Writes config.json and random weights (float64, stored in the case's dtype) into mdir."""
    cfgd = hf_config(case)
    cfg = ModelConfig(cfgd)
    if cfg.rope_scaling:
        bands = llama3_bands(cfg)
        assert {"high", "medium", "low"} <= set(bands), f"{case['name']}: llama3 bands {bands}"
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfgd, f, indent=2)
        f.write("\n")
    weights = random_weights(CausalLM(cfg, torch.float64), gen)
    sdt = STORE_DTYPES[case["dtype"]]
    meta = {"format": "pt"}
    if case["shards"] > 1:
        st.save_sharded(weights, mdir, "model", case["shards"], metadata=meta, dtype=sdt)
    else:
        st.save_file(weights, os.path.join(mdir, "model.safetensors"), metadata=meta, dtype=sdt)


def write_adapter(model, lcfg, adir, gen):
    """Writes a PEFT adapter for `model` into adir with A and B both random (N(0, 0.2^2)), so that
    both get non-trivial gradients; stored F32."""
    acfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "",
        "r": lcfg["r"],
        "lora_alpha": lcfg["lora_alpha"],
        "lora_dropout": 0.0,
        "target_modules": lcfg["target_modules"],
        "use_rslora": lcfg["use_rslora"],
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "modules_to_save": None,
    }
    with open(os.path.join(adir, "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=2)
        f.write("\n")
    adapter = {}
    for name, mod in model.lora_targets(lcfg["target_modules"]):
        key = f"base_model.model.{name}"
        adapter[key + ".lora_A.weight"] = 0.2 * torch.randn(lcfg["r"], mod.in_features, generator=gen,
                                                            dtype=torch.float64)
        adapter[key + ".lora_B.weight"] = 0.2 * torch.randn(mod.out_features, lcfg["r"], generator=gen,
                                                            dtype=torch.float64)
    st.save_file(adapter, os.path.join(adir, "adapter_model.safetensors"), metadata={"format": "pt"},
                 dtype=torch.float32)


def write_case(case, root, seed):
    d = os.path.join(root, case["name"])
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir, adir = os.path.join(d, "model"), os.path.join(d, "adapter")
    os.makedirs(mdir)
    os.makedirs(adir)
    gen = torch.Generator().manual_seed(seed)

    write_model(case, mdir, gen)

    # --- batch --------------------------------------------------------------------------
    batch = make_batch(case, gen)
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in batch.items()}, f)
        f.write("\n")

    # --- base model: reload from disk so the reference sees exactly the stored values ----
    model = load_model(mdir, torch.float64)
    args = (batch["input_ids"], batch["attention_mask"], batch["position_ids"])
    labels = batch["labels"]
    exp = {}
    logits = model(*args)
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    exp["base.logits"] = logits.detach()
    exp["base.logprobs"] = token_logprobs(logits, labels).detach()
    exp["base.loss"] = loss.detach().reshape(1)
    full_grads = {f"full.grad.{n}": p.grad.detach().clone() for n, p in model.base_parameters().items()}

    # --- adapter: A and B both random so both get non-trivial gradients ----------------
    write_adapter(model, case["lora"], adir, gen)

    load_adapter(model, adir)  # freezes the base weights
    logits = model(*args)
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    exp["lora.logits"] = logits.detach()
    exp["lora.logprobs"] = token_logprobs(logits, labels).detach()
    exp["lora.loss"] = loss.detach().reshape(1)
    for key, p in model.lora_parameters().items():
        exp[f"lora.grad.{key}"] = p.grad.detach().clone()
    exp.update(full_grads)

    # --- five AdamW steps from this adapter on this batch (llm.c's loss-trajectory check) --
    params = list(model.lora_parameters().values())
    for p in params:
        p.grad = None
    opt = torch.optim.AdamW(params, lr=TRAIN_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses = []
    for _ in range(TRAIN_STEPS):
        step_loss = causal_lm_loss(model(*args), labels)
        losses.append(step_loss.detach())
        step_loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    exp["train.losses"] = torch.stack(losses)
    for key, p in model.lora_parameters().items():
        exp[f"train.final.{key}"] = p.detach().clone()
    st.save_file(exp, os.path.join(d, "expected.safetensors"), metadata={"case": case["name"]},
                 dtype=torch.float64)
    return exp


def up_to_date(out):
    return cases_cli.stamp_is_newer(os.path.join(out, "cases.json"), ["make_cases.py"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--force", action="store_true", help="regenerate even when up to date")
    ap.add_argument("--case", action="append", help="only this case (repeatable; cases.json not rewritten)")
    args = ap.parse_args()
    if not args.force and not args.case and up_to_date(args.out):
        print(f"reference cases in {args.out} are up to date")
        return
    torch.set_num_threads(1)  # same reduction order every run -> same bytes
    os.makedirs(args.out, exist_ok=True)
    stamp = os.path.join(args.out, "cases.json")
    if os.path.exists(stamp) and not args.case:
        os.remove(stamp)  # an interrupted run must not look up to date
    for seed, case in enumerate(CASES):
        if args.case and case["name"] not in args.case:
            continue
        exp = write_case(case, args.out, 1000 + seed)
        print(f"{case['name']}: {case['arch']} {case['dtype']} B={case['B']} T={case['T']} "
              f"pad={case['padding']} base.loss={exp['base.loss'].item():.6f} "
              f"lora.loss={exp['lora.loss'].item():.6f} tensors={len(exp)}")
    if not args.case:
        with open(stamp, "w") as f:
            json.dump([c["name"] for c in CASES], f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
