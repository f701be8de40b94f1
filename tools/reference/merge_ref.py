#!/usr/bin/python3
"""The merge oracle: mergekit's merge methods on LoRA task vectors, in float64 torch.

    /usr/bin/python3 tools/reference/merge_ref.py --spec SPEC.json

Written from the published definitions (TIES-Merging, arXiv 2306.01708; DARE, arXiv 2311.03099;
Task Arithmetic, arXiv 2212.04089; mergekit's docs/merge_methods.md and its generalized task
arithmetic rules, docs/MERGING.md), not from paft's code.

SPEC.json:
  {"base": MODEL_DIR, "adapters": [PEFT_DIR, ...], "out": DIR,
   "cases": [{"name": str, "method": "linear"|"task_arithmetic"|"ties"|"dare_ties",
              "weights": [..] | null, "densities": [..] | null, "normalize": bool | null,
              "lambda": float | null, "rescale": "none"|"l1"|"density" | null,
              "masks": FILE | null}, ...]}
null means the method's default. dare_ties draws random masks, so its case names a safetensors
FILE of the keep masks to use: "mask.<i>.<tensor name>" (0/1) for every tensor model i changes.
Each case writes DIR/<name>.safetensors: every tensor of the merged model, F64.

A model i is base + delta_i, delta_i = s_i * B @ A for the modules adapter i targets (s = alpha/r,
or alpha/sqrt(r) with rsLoRA) and 0 elsewhere.
"""

import argparse
import json
import math
import os
import sys

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import st  # noqa: E402

# mergekit's per-method defaults: (normalize, rescale, sparsification, consensus)
METHODS = {
    "linear": (True, None, None, None),
    "task_arithmetic": (False, None, None, None),
    "ties": (True, None, "magnitude", "sum"),
    "dare_ties": (False, "l1", "random", "sum"),
}


def adapter_deltas(adapter_dir):
    """{HF tensor name: s * B @ A} (float64) for every module the PEFT adapter targets."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora", False) else alpha / r
    weights = st.load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    out = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        b = weights[key.replace(".lora_A.", ".lora_B.")]
        out[module + ".weight"] = scale * (b.double() @ a.double())
    return out


def magnitude_trim(delta, density):
    """TIES trim: keep the k = int(density * numel) largest |delta|; equal magnitudes are taken
    in flat index order (a stable descending sort)."""
    if density >= 1:
        return delta
    k = int(density * delta.numel())
    assert k > 0, "density keeps no entry"
    flat = delta.flatten()
    order = torch.sort(flat.abs(), descending=True, stable=True).indices
    mask = torch.zeros_like(flat)
    mask[order[:k]] = 1
    return (flat * mask).reshape(delta.shape)


def rescale(original, sparse, how, density):
    """mergekit: l1 matches the original's L1 norm (skipped when either norm is < 1e-7);
    density divides by the keep probability (the DARE paper)."""
    if how is None or how == "none" or density >= 1:
        return sparse
    if how == "density":
        return sparse / density
    before, after = original.abs().sum(), sparse.abs().sum()
    if before < 1e-7 or after < 1e-7:
        return sparse
    return sparse * (before / after)


def merge_tensor(name, base, deltas, case, masks):
    """deltas: one per model (zeros where the model does not change the tensor)."""
    norm_default, rescale_default, sparsify, consensus = METHODS[case["method"]]
    n = len(deltas)
    w = torch.tensor(case.get("weights") or [1.0] * n, dtype=torch.float64)
    dens = case.get("densities") or [1.0] * n
    normalize = norm_default if case.get("normalize") is None else case["normalize"]
    lam = 1.0 if case.get("lambda") is None else case["lambda"]
    how = case.get("rescale") or rescale_default
    shape_w = w.reshape([n] + [1] * base.dim())

    if case["method"] == "linear":
        models = torch.stack([base + d for d in deltas])
        res = (shape_w * models).sum(0)
        return res / w.sum() if normalize else res

    sparse = []
    for i, d in enumerate(deltas):
        if sparsify is None or not bool(d.abs().sum() > 0):
            sparse.append(d)  # a zero delta stays zero whatever the sparsification
        elif sparsify == "magnitude":
            sparse.append(rescale(d, magnitude_trim(d, dens[i]), how, dens[i]))
        else:
            mask = masks[f"mask.{i}.{name}"].double() if dens[i] < 1 else torch.ones_like(d)
            sparse.append(rescale(d, d * mask, how, dens[i]))
    wd = torch.stack(sparse) * shape_w
    if consensus == "sum":
        elected = torch.where(wd.sum(0) >= 0, 1.0, -1.0).double()
        keep = (torch.sign(wd) == elected).double()
        mixed = (wd * keep).sum(0)
        divisor = (shape_w * keep).sum(0)
    else:
        mixed = wd.sum(0)
        divisor = w.sum() * torch.ones_like(base)
    if normalize:
        divisor = torch.where(divisor.abs() < 1e-8, torch.ones_like(divisor), divisor)
        mixed = mixed / divisor
    return base + lam * mixed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    base = {k: v.double() for k, v in st.load_dir(spec["base"]).items()}
    per_adapter = [adapter_deltas(d) for d in spec["adapters"]]
    for name_set in per_adapter:
        unknown = set(name_set) - set(base)
        if unknown:
            raise ValueError(f"adapter modules not in the base: {sorted(unknown)[:3]}")
    os.makedirs(spec["out"], exist_ok=True)
    for case in spec["cases"]:
        if case["method"] not in METHODS:
            raise ValueError(f"unknown method {case['method']}")
        masks = st.load_file(case["masks"]) if case.get("masks") else {}
        out = {}
        for name, b in base.items():
            deltas = [a.get(name, torch.zeros_like(b)) for a in per_adapter]
            out[name] = merge_tensor(name, b, deltas, case, masks)
        st.save_file(out, os.path.join(spec["out"], case["name"] + ".safetensors"))


if __name__ == "__main__":
    main()
