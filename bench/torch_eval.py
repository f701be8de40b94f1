#!/usr/bin/python3
"""PyTorch peer of paft's scoring benchmark (bench/bench_eval.cpp): what lm-evaluation-harness's
hf-causal-experimental model does at the leaderboard's batch size 1, eagerly on the CPU in float32:
one forward pass of each request's whole input, log_softmax, the continuation's log-probabilities
summed and the greedy check.

    /usr/bin/python3 bench/torch_eval.py --model DIR --requests REQ.json --threads N

REQ.json: {"requests": [{"input": [ids...], "continuation": [ids...]}, ...]} where input is the
harness's (context + continuation)[-(L+1):][:-1] (paft's tokenization; tokenizing is not timed here).
The model is tools/reference/llama_ref.py's (HF semantics). The last stdout line is one JSON object:
  {"seconds", "request_tokens", "tokens_per_s", "logprobs": [...], "threads", "torch"}
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import llama_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--requests", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = llama_ref.load_model(args.model, torch.float32).eval()
    with open(args.requests) as f:
        requests = json.load(f)["requests"]
    logprobs, tokens = [], 0
    start = time.perf_counter()
    with torch.no_grad():
        for r in requests:
            inp = torch.tensor([r["input"]], dtype=torch.long)
            n = len(r["continuation"])
            logits = model(inp, torch.ones_like(inp), torch.arange(inp.shape[1])[None])[0]
            rows = torch.log_softmax(logits[inp.shape[1] - n:], dim=-1)
            target = torch.tensor(r["continuation"])
            bool((rows.argmax(dim=-1) == target).all())
            logprobs.append(float(rows.gather(-1, target[:, None]).sum()))
            tokens += inp.shape[1]
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "request_tokens": tokens, "tokens_per_s": tokens / seconds,
                      "logprobs": logprobs, "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
