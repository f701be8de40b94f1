#!/usr/bin/python3
"""The sparsity oracle: the PAFT paper's Figure 2 counts, in float64 numpy, from the files.

    /usr/bin/python3 tools/reference/sparsity_ref.py --threshold T [--threshold T2 ...] [--base DIR] --out OUT.json PATH...
    /usr/bin/python3 tools/reference/sparsity_ref.py --check-svg FILE --out OUT.json

Counts: for each PATH, a PEFT adapter folder (delta = s * B @ A per lora_A / lora_B pair,
s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora) or a model folder (delta = W - W_base
per tensor, against --base), the number of entries with |delta| < T and of all entries, per
(layer, module). layer: the number after "layers." in the tensor's name (null when none);
module: the name's last part before ".weight", or its last two parts joined by "." when the name
does not end in ".weight" ("q_proj.bias"). OUT.json, one run per threshold:
  {"runs": [{"threshold": T, "inputs": [{"path", "kind": "adapter"|"model", "ambiguous": n,
             "entries": [{"layer", "module", "near_zero", "total"}, ...]}, ...]}, ...]}
"ambiguous" counts adapter entries whose |delta| is so close to T that float32 matrix products
(paft's) may fall on the other side: ||delta| - T| <= (r + 2) * 2^-24 * s * (|B| @ |A|). A test
can only expect exact agreement when it is 0. Model deltas are exact in float64.

SVG check: parses FILE as XML (ElementTree) and writes {"root": tag, "bars": [bar tooltips],
"points": [point tooltips], "legend": [legend texts], "titles": [chart titles], "texts": [every
text]}. Written from the definitions, not from paft's code; numpy only (its own safetensors
reader), so it starts fast.
"""

import argparse
import json
import math
import os
import re
import struct
import xml.etree.ElementTree as ET

import numpy as np

SVG = "{http://www.w3.org/2000/svg}"
FLOATS = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}


def load_file(path):
    """{name: float64 array} of one safetensors file (8-byte header length, JSON header, data)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[8 + n + b : 8 + n + e]
        if info["dtype"] == "BF16":  # the top 16 bits of an f32
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, FLOATS[info["dtype"]])
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out


def load_dir(path, prefix):
    """<prefix>.safetensors, or the shards listed in <prefix>.safetensors.index.json."""
    single = os.path.join(path, prefix + ".safetensors")
    if os.path.exists(single):
        return load_file(single)
    with open(os.path.join(path, prefix + ".safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for shard in shards:
        out.update(load_file(os.path.join(path, shard)))
    return out


def group_of(name):
    """(layer or None, module) of a tensor name."""
    m = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
    layer = int(m.group(1)) if m else None
    parts = name.split(".")
    if len(parts) < 2:
        return layer, name
    return layer, parts[-2] if parts[-1] == "weight" else parts[-2] + "." + parts[-1]


class Groups:
    def __init__(self):
        self.counts = {}

    def add(self, name, near_zero, total):
        key = group_of(name)
        nz, tot = self.counts.get(key, (0, 0))
        self.counts[key] = (nz + int(near_zero), tot + int(total))

    def entries(self):
        return [{"layer": layer, "module": module, "near_zero": nz, "total": tot}
                for (layer, module), (nz, tot) in sorted(self.counts.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1]))]


def adapter_counts(path, threshold):
    with open(os.path.join(path, "adapter_config.json")) as f:
        cfg = json.load(f)
    r = cfg["r"]
    alpha = cfg.get("lora_alpha", 8)
    s = alpha / math.sqrt(r) if cfg.get("use_rslora", False) else alpha / r
    weights = load_dir(path, "adapter_model")
    groups, ambiguous = Groups(), 0
    for key in sorted(weights):
        if not key.endswith(".lora_A.weight"):
            continue
        a = weights[key]
        b = weights[key[: -len(".lora_A.weight")] + ".lora_B.weight"]
        assert a.shape[0] == r and b.shape[1] == r, key
        delta = np.abs(s * (b @ a))
        bound = (r + 2) * 2.0**-24 * abs(s) * (np.abs(b) @ np.abs(a))
        ambiguous += int(np.count_nonzero(np.abs(delta - threshold) <= bound))
        groups.add(key[: -len(".lora_A.weight")] + ".weight", np.count_nonzero(delta < threshold), delta.size)
    return {"path": path, "kind": "adapter", "ambiguous": ambiguous, "entries": groups.entries()}


def model_counts(path, base, threshold):
    weights, base_weights = load_dir(path, "model"), load_dir(base, "model")
    assert set(weights) == set(base_weights), "tensor names differ"
    groups = Groups()
    for name in sorted(weights):
        delta = np.abs(weights[name] - base_weights[name])
        groups.add(name, np.count_nonzero(delta < threshold), delta.size)
    return {"path": path, "kind": "model", "ambiguous": 0, "entries": groups.entries()}


def check_svg(path):
    root = ET.parse(path).getroot()

    def texts_of(tag, cls):
        return ["".join(e.itertext()) for e in root.iter(SVG + tag) if e.get("class") == cls]

    def tooltips(tag, cls):
        out = []
        for e in root.iter(SVG + tag):
            if e.get("class") == cls:
                title = e.find(SVG + "title")
                out.append(title.text if title is not None else None)
        return out

    return {
        "root": root.tag,
        "bars": tooltips("rect", "bar"),
        "points": tooltips("circle", "point"),
        "legend": texts_of("text", "legend"),
        "titles": texts_of("text", "title"),
        "texts": ["".join(e.itertext()) for e in root.iter(SVG + "text")],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--threshold", type=float, action="append")
    ap.add_argument("--base")
    ap.add_argument("--check-svg")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.check_svg:
        result = check_svg(args.check_svg)
    else:
        runs = []
        for threshold in args.threshold or [1e-5]:
            inputs = []
            for p in args.paths:
                if os.path.exists(os.path.join(p, "adapter_config.json")):
                    inputs.append(adapter_counts(p, threshold))
                else:
                    inputs.append(model_counts(p, args.base, threshold))
            runs.append({"threshold": threshold, "inputs": inputs})
        result = {"runs": runs}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
