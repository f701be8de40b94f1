#!/usr/bin/python3
"""The pre-training oracle: a few full-parameter AdamW steps of the float64 reference model.

    /usr/bin/python3 tools/reference/pretrain_ref.py --spec SPEC.json

Written from the definitions (Hugging Face's causal-LM loss, torch.optim.AdamW with two parameter
groups, torch.nn.utils.clip_grad_norm_, transformers' get_scheduler), not from paft's code.

SPEC.json:
  {"model": MODEL_DIR,                  the initial weights (config.json + safetensors)
   "steps": [[ROW, ...], ...],          the rows of each optimizer step, in order
   "learning_rate": float, "lr_scheduler_type": "cosine" | "linear" | "constant",
   "warmup_ratio": float, "weight_decay": float, "max_grad_norm": float,
   "adam_beta1": float, "adam_beta2": float, "adam_epsilon": float,
   "out": FILE}
ROW = {"input_ids": [...], "seq_lengths": [...]}: a packed row, the documents one after another.

A packed row means its documents each on their own (attention never crosses a document, each one's
positions start at 0), so every document is run here as a sequence by itself; its loss covers
each of its tokens but the first (predicted from the tokens before it in the document). A step's
loss is the mean over every predicted token of its rows. Weight decay (decoupled, AdamW's) applies
to the parameters with two dimensions, not to norms (and biases).

FILE (safetensors, F64): "loss", "grad_norm" (before clipping), "learning_rate" [steps], and every
parameter after the last step under its Hugging Face name.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import st  # noqa: E402
from llama_ref import load_model  # noqa: E402


def schedule_factor(kind, step, warmup, total):
    """transformers' get_scheduler factors at optimizer step `step` (0-based)."""
    if kind == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if kind == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    raise ValueError(f"unknown schedule {kind}")


def document_nll(model, ids):
    """Summed cross-entropy of ids[1:] predicted from the prefixes of ids, and the count."""
    x = torch.tensor([ids], dtype=torch.long)
    T = len(ids)
    logits = model(x, torch.ones(1, T, dtype=torch.long), torch.arange(T)[None])  # [1, T, V]
    nll = F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
    return nll, T - 1


def step_loss(model, rows):
    total, count = 0.0, 0
    for row in rows:
        at = 0
        for n in row["seq_lengths"]:
            nll, k = document_nll(model, row["input_ids"][at:at + n])
            total = total + nll
            count += k
            at += n
        if at != len(row["input_ids"]):
            raise ValueError("seq_lengths do not cover the row")
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    spec = json.load(open(ap.parse_args().spec))

    torch.manual_seed(0)
    model = load_model(spec["model"], torch.float64)
    params = dict(model.named_parameters())
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec["learning_rate"], betas=(spec["adam_beta1"], spec["adam_beta2"]), eps=spec["adam_epsilon"])

    total = len(spec["steps"])
    warmup = math.ceil(total * spec["warmup_ratio"])
    losses, norms, lrs = [], [], []
    for step, rows in enumerate(spec["steps"]):
        lr = spec["learning_rate"] * schedule_factor(spec["lr_scheduler_type"], step, warmup, total)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss = step_loss(model, rows)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), spec["max_grad_norm"])
        opt.step()
        losses.append(loss.item())
        norms.append(float(norm))
        lrs.append(lr)

    out = {"loss": torch.tensor(losses, dtype=torch.float64), "grad_norm": torch.tensor(norms, dtype=torch.float64),
           "learning_rate": torch.tensor(lrs, dtype=torch.float64)}
    for name, p in params.items():
        out[name] = p.detach().clone()
    st.save_file(out, spec["out"])


if __name__ == "__main__":
    main()
