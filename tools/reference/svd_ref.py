#!/usr/bin/python3
"""Truncated SVDs of deltas in float64: the oracle of tests/test-lora-extract.cpp.

    /usr/bin/python3 tools/reference/svd_ref.py --spec SPEC.json

SPEC.json: {"deltas": "<file>.safetensors" (F32 tensors [rows, cols]),
            "out": "<file>.safetensors",
            "cases": [{"name": tensor name in deltas, "rank": r}, ...]}

For each case, with D the delta upcast to float64 and D = U diag(s) Vh its SVD
(torch.linalg.svd, full_matrices=False), k = min(r, min(rows, cols)), writes F64 tensors:
  <name>.s         all min(rows, cols) singular values, descending
  <name>.recon     U[:, :k] diag(s[:k]) Vh[:k], the best rank-r approximation [rows, cols]
  <name>.retained  [1]: sum(s[:k]^2) / sum(s^2), 1 for a zero delta
"""

import argparse
import json
import os
import sys

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import st  # noqa: E402


def truncated_svd(delta, rank):
    d = delta.to(torch.float64)
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    k = min(rank, s.numel())
    recon = (u[:, :k] * s[:k]) @ vh[:k]
    total = float((s * s).sum())
    retained = float((s[:k] * s[:k]).sum()) / total if total > 0 else 1.0
    return s, recon, retained


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.spec) as f:
        spec = json.load(f)
    deltas = st.load_file(spec["deltas"])
    out = {}
    for case in spec["cases"]:
        name, rank = case["name"], case["rank"]
        s, recon, retained = truncated_svd(deltas[name], rank)
        out[name + ".s"] = s
        out[name + ".recon"] = recon
        out[name + ".retained"] = torch.tensor([retained], dtype=torch.float64)
    st.save_file(out, spec["out"])


if __name__ == "__main__":
    main()
