#!/usr/bin/python3
"""The merge-methods oracle: every mergekit merge method on one tensor (or, for the whole-model
top-k, on a set of tensors), in float64 torch.

    /usr/bin/python3 tools/reference/merge_methods_ref.py --spec SPEC.json

Written from the definitions (mergekit's merge_methods/*.py and sparsify.py as
docs/MERGING.md states them; TIES-Merging arXiv 2306.01708, DARE 2311.03099, Model Breadcrumbs
2312.06795, DELLA 2406.11617, Model Stock 2403.19522), not from paft's code. Ranking rule of
every magnitude selection: larger |d| first, equal magnitudes by lower flat index (a stable
descending sort), in (tensor order, flat index) order for the whole-model top-k.

SPEC.json:
  {"inputs": FILE, "out": FILE,
   "cases": [{"name": str, "method": str, "shape": [rows, cols], "models": M,
              "global": {param: value}, "per_model": [{param: value}, ...],
              "shapes": [[rows, cols], ...] (instead of "shape": a whole-model case, one per tensor)}]}
Parameters are as a user writes them (absent = mergekit's default). FILE holds F32 tensors
"<name>.base" (absent: no base), "<name>.delta.<i>" (absent: a zero delta), "<name>.model.<i>"
(model i's own tensor, where given), and for random methods "<name>.mask.<i>" (U8 keep masks,
drawn by paft; the oracle cannot redraw paft's generator). A whole-model case uses
"<name>.<t>.base" etc. for its tensor t. The oracle writes F64 "<name>" (or "<name>.<t>") to out.
"""

import argparse
import json
import math
import os
import sys

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import st  # noqa: E402

# mergekit's registry: (sparsification, consensus, default normalize, default rescale)
GTA = {
    "task_arithmetic": (None, False, False, False),
    "ties": ("magnitude", True, True, False),
    "dare_ties": ("random", True, False, True),
    "dare_linear": ("random", False, False, True),
    "breadcrumbs": ("outliers", False, False, False),
    "breadcrumbs_ties": ("outliers", True, False, False),
    "della": ("della", True, True, True),
    "della_linear": ("della", False, False, True),
}


def rescale_word(value):
    """mergekit's rescale is a bool (true = match the L1 norm); paft also takes the words."""
    if value is True or value == "true" or value == "l1":
        return "l1"
    if value is False or value == "false" or value == "none":
        return "none"
    assert value == "density", value
    return "density"


def descending_order(magnitudes):
    """Indices by |d| descending, equal magnitudes by index (stable sort of -|d|)."""
    return torch.sort(-magnitudes, stable=True).indices


def top_mask(magnitudes, skip, keep):
    """1 for the entries of descending rank in [skip, skip + keep)."""
    mask = torch.zeros_like(magnitudes)
    mask[descending_order(magnitudes)[skip:skip + keep]] = 1
    return mask


def outlier_counts(n, density, gamma):
    """Model Breadcrumbs: drop the int(gamma n) largest, keep the next int(density n); when the
    two exceed n, fewer large ones are dropped (mergekit's n_bot < 0 branch). Kept ranks
    [n_top, n_top + n_keep) of the descending order = [n_bot, n - n_top) of the ascending one,
    taken explicitly (mergekit's indices[n_bot:-n_top] is empty when n_top == 0)."""
    n_keep = int(density * n)
    n_top = int(gamma * n)
    n_bot = n - n_keep - n_top
    if n_bot < 0:
        n_top += n_bot
    return n_top, n_keep


def selection_mask(flat, p, kind):
    """Keep mask of a magnitude selection over one span (flat vector)."""
    n = flat.numel()
    if kind == "magnitude":
        k = int(p["density"] * n)
        assert k > 0, "density keeps no entry"
        return top_mask(flat.abs(), 0, k)
    n_top, n_keep = outlier_counts(n, p["density"], p["gamma"])
    assert n_keep > 0, "density keeps no entry"
    return top_mask(flat.abs(), n_top, n_keep)


def della_probabilities(d, density, epsilon):
    """Per row: p = (density - eps) + rank / (cols - 1) * 2 eps, rank 0 = smallest |d| (equal
    magnitudes: the lower index ranks as the larger); a one-entry row gets density."""
    rows, cols = d.shape
    p = torch.empty_like(d)
    for r in range(rows):
        if cols == 1:
            p[r, 0] = density
            continue
        order = descending_order(d[r].abs())
        for q in range(cols):
            rank_norm = (cols - 1 - q) / (cols - 1)
            p[r, order[q]] = (density - epsilon) + rank_norm * 2 * epsilon
    return p


def parameters(case):
    """Global and per-model parameters with mergekit's defaults."""
    method = case["method"]
    g = dict(case.get("global", {}))
    models = [dict(m) for m in case.get("per_model", [{}] * case["models"])]
    if method in GTA:
        how, _, norm, resc = GTA[method]
        g.setdefault("lambda", 1.0)
        g.setdefault("normalize", norm)
        g["rescale"] = rescale_word(g.get("rescale", resc))
        g.setdefault("consensus_method", "sum")
        g.setdefault("normalize_divisor", "weights")
        g.setdefault("topk_scope", "tensor")
        for m in models:
            m.setdefault("density", 1.0)
            m.setdefault("gamma", 0.01)
            m.setdefault("epsilon", 0.15)
    elif method == "linear":
        g.setdefault("normalize", True)
    elif method == "model_stock":
        g.setdefault("filter_wise", False)
    return g, models


def sparsify(d, p, g, how, mask, kept):
    """(sparsified delta, per-entry or scalar rescale factor). `kept`: a whole-model selection's
    mask for this tensor, or None."""
    density = p["density"]
    if how is None or density >= 1:
        return d, 1.0
    entry_scale = None
    if how in ("magnitude", "outliers"):
        if kept is None:
            scope = g["topk_scope"]
            if scope == "tensor":
                kept = selection_mask(d.flatten(), p, how).reshape(d.shape)
            else:
                assert scope == "row"
                kept = torch.stack([selection_mask(row, p, how) for row in d])
        sparse = d * kept
    elif how == "random":
        sparse = d * mask
    else:
        sparse = d * mask
        if g["rescale"] == "density":
            entry_scale = 1.0 / della_probabilities(d, density, p["epsilon"])
    rescale = g["rescale"]
    if entry_scale is not None:
        return sparse, entry_scale
    if rescale == "l1":
        before, after = float(d.abs().sum()), float(sparse.abs().sum())
        return sparse, 1.0 if before < 1e-7 or after < 1e-7 else before / after
    if rescale == "density":
        return sparse, 1.0 / density
    return sparse, 1.0


def merge_gta(case, base, deltas, masks, kept=None):
    method = case["method"]
    how, consensus, _, _ = GTA[method]
    g, models = parameters(case)
    n = len(deltas)
    weighted = []
    for i in range(n):
        if deltas[i] is None:
            weighted.append(None)
            continue
        sparse, scale = sparsify(deltas[i], models[i], g, how, masks[i], None if kept is None else kept[i])
        w = models[i]["weight"]
        if isinstance(scale, torch.Tensor):
            weighted.append((w * 1.0) * sparse * scale)
        else:
            weighted.append((w * scale) * sparse)
    if all(x is None for x in weighted):
        return base.clone()
    zero = torch.zeros_like(base)
    if consensus:
        votes = zero.clone()
        for x in weighted:
            if x is not None:
                votes = votes + (torch.sign(x) if g["consensus_method"] == "count" else x)
        elected = torch.where(votes >= 0, 1.0, -1.0).double()
        mixed, divisor = zero.clone(), zero.clone()
        for i, x in enumerate(weighted):
            if x is None:
                continue
            agree = (torch.sign(x) == elected).double()
            mixed = mixed + x * agree
            w = 1.0 if g["normalize_divisor"] == "count" else models[i]["weight"]
            divisor = divisor + w * agree
    else:
        mixed = zero.clone()
        for x in weighted:
            if x is not None:
                mixed = mixed + x
        wsum = 0.0
        for m in models:
            wsum += m["weight"]
        divisor = torch.full_like(base, wsum)
    if g["normalize"]:
        divisor = torch.where(divisor.abs() < 1e-8, torch.ones_like(divisor), divisor)
        mixed = mixed / divisor
    return base + mixed * g["lambda"]


def merge_linear(case, values):
    g, models = parameters(case)
    w = [m["weight"] for m in models]
    acc = sum(wi * v for wi, v in zip(w, values))
    return acc / sum(w) if g["normalize"] else acc


def merge_slerp(case, base, values):
    t = case["global"]["t"]
    v0, v1 = base.flatten(), values[0].flatten()
    n0, n1 = v0.norm().item(), v1.norm().item()
    u0 = v0 / n0 if n0 > 1e-8 else v0
    u1 = v1 / n1 if n1 > 1e-8 else v1
    dot = float((u0 * u1).sum())
    if abs(dot) > 0.9995:
        return ((1 - t) * v0 + t * v1).reshape(base.shape)
    theta = math.acos(dot)
    s0 = math.sin(theta - theta * t) / math.sin(theta)
    s1 = math.sin(theta * t) / math.sin(theta)
    return (s0 * v0 + s1 * v1).reshape(base.shape)


def merge_model_stock(case, base, deltas, values):
    g, _ = parameters(case)
    rows, cols = base.shape
    groups = rows if g["filter_wise"] else 1
    d = [(x if x is not None else torch.zeros_like(base)).reshape(groups, -1) for x in deltas]
    n = len(d)
    cos = torch.zeros(groups, dtype=torch.float64)
    for i in range(n):
        for k in range(i + 1, n):
            norms = d[i].norm(dim=1) * d[k].norm(dim=1)
            cos += ((d[i] * d[k]).sum(dim=1) / norms.clamp(min=1e-6)).clamp(-1, 1)
    cos /= n * (n - 1) / 2
    t = (n * cos / (1 + (n - 1) * cos)).unsqueeze(1)
    avg = sum(v.reshape(groups, -1) for v in values) / n
    return (t * avg + (1 - t) * base.reshape(groups, -1)).reshape(base.shape)


def load_tensor(inputs, key, shape):
    x = inputs.get(key)
    return None if x is None else x.double().reshape(shape)


def merge_one(case, inputs, prefix, shape, kept=None):
    rows, cols = shape
    n = case["models"]
    base = load_tensor(inputs, prefix + ".base", (rows, cols))
    deltas = [load_tensor(inputs, f"{prefix}.delta.{i}", (rows, cols)) for i in range(n)]
    given = [load_tensor(inputs, f"{prefix}.model.{i}", (rows, cols)) for i in range(n)]
    masks = [load_tensor(inputs, f"{prefix}.mask.{i}", (rows, cols)) for i in range(n)]
    values = []
    for i in range(n):
        if given[i] is not None:
            values.append(given[i])
            if deltas[i] is None and base is not None:  # mergekit's delta: model - base in f32
                deltas[i] = (given[i] - base).float().double()
        else:
            values.append(base + (deltas[i] if deltas[i] is not None else 0.0))
    method = case["method"]
    if method == "linear":
        return merge_linear(case, values)
    if method == "slerp":
        return merge_slerp(case, base, values)
    if method == "model_stock":
        return merge_model_stock(case, base, deltas, values)
    return merge_gta(case, base, deltas, masks, kept)


def merge_model(case, inputs, out):
    """Whole-model top-k: each model's selection over the concatenation of its tensors' deltas
    (zero deltas included) in tensor order, then every tensor merged with its part."""
    shapes = case["shapes"]
    n, count = case["models"], len(shapes)
    _, models = parameters(case)
    how = GTA[case["method"]][0]
    sizes = [r * c for r, c in shapes]
    starts = [sum(sizes[:t]) for t in range(count)]
    kept = [[None] * n for _ in range(count)]
    for i in range(n):
        if models[i]["density"] >= 1:
            continue
        parts = []
        for t in range(count):
            d = inputs.get(f"{case['name']}.{t}.delta.{i}")
            parts.append(d.double().flatten() if d is not None else torch.zeros(sizes[t], dtype=torch.float64))
        mask = selection_mask(torch.cat(parts), models[i], how)
        for t in range(count):
            kept[t][i] = mask[starts[t]:starts[t] + sizes[t]].reshape(shapes[t])
    for t in range(count):
        out[f"{case['name']}.{t}"] = merge_one(case, inputs, f"{case['name']}.{t}", shapes[t], kept[t])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    inputs = st.load_file(spec["inputs"])
    out = {}
    for case in spec["cases"]:
        if "shapes" in case:
            merge_model(case, inputs, out)
        else:
            out[case["name"]] = merge_one(case, inputs, case["name"], case["shape"])
    st.save_file(out, spec["out"])


if __name__ == "__main__":
    main()
