"""What paft writes, the reference reads: `paft init-model` writes a model (Hugging Face layout,
bf16 and sharded-free f32), `paft score --per-token` scores sequences on it, and the float64
reference loads the same files and must give the same per-token log-probabilities (relative
error <= 1e-5, max |diff| / max |ref|). Exits non-zero on any mismatch.

  /usr/bin/python3 tools/reference/check_written_model.py --paft build/paft --work DIR
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from llama_ref import load_model  # noqa: E402

PRESET_VOCAB = 1000  # the "tiny" preset's vocabulary


def paft(binary, *args):
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout


def reference_logprobs(model_dir, rows):
    model = load_model(model_dir, torch.float64)
    out = []
    for ids in rows:
        x = torch.tensor([ids])
        ones = torch.ones_like(x)
        pos = torch.arange(len(ids))[None]
        logp = torch.log_softmax(model(x, ones, pos)[0], dim=-1)  # [T, V]
        out.append([logp[t - 1, ids[t]].item() for t in range(1, len(ids))])
    return out


def check(binary, work, dtype):
    model_dir = os.path.join(work, f"model-{dtype}")
    paft(binary, "init-model", "--preset", "tiny", "--dtype", dtype, "--seed", "3", "--out", model_dir)
    rng = random.Random(4)
    rows = [[rng.randrange(PRESET_VOCAB) for _ in range(rng.randrange(2, 40))] for _ in range(6)]
    data = os.path.join(work, "data.jsonl")
    with open(data, "w") as f:
        for ids in rows:
            f.write(json.dumps({"input_ids": ids}) + "\n")
    got = [json.loads(line)["token_logprobs"] for line in paft(binary, "score", "--model", model_dir, "--data", data,
                                                                  "--per-token").splitlines()]
    want = reference_logprobs(model_dir, rows)
    diff = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
    ref = max(abs(b) for w in want for b in w)
    lengths_ok = [len(g) for g in got] == [len(w) for w in want]
    print(f"{dtype}: max |paft - reference| / max |reference| = {diff / ref:.2e}, lengths ok: {lengths_ok}")
    return lengths_ok and diff / ref <= 1e-5


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paft", required=True, help="the paft program")
    ap.add_argument("--work", required=True, help="a scratch folder (replaced)")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    torch.set_num_threads(1)
    ok = all([check(args.paft, args.work, dtype) for dtype in ("f32", "bf16", "f16")])
    shutil.rmtree(args.work, ignore_errors=True)
    print("written models agree with the reference" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
