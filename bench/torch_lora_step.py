#!/usr/bin/python3
"""PyTorch peer of paft's LoRA training-step benchmark (eager PyTorch on the CPU, float32).

    /usr/bin/python3 bench/torch_lora_step.py --model DIR --batch BATCH.json --threads N \
        --steps S --warmup W --rank 16 --alpha 32

Loads the HF model directory (F32 or BF16 weights, upcast to float32) with the reference
model of tools/reference/llama_ref.py (nn.Linear projections, batched-matmul attention with
an additive mask, full logits + F.cross_entropy as HF computes its loss), freezes it, adds
LoRA with PEFT's default init (A ~ U(+-1/sqrt(in)), B = 0) to q,k,v,o,gate,up,down, and times
S steps of forward + loss + backward + AdamW(lr=1e-4) step + zero_grad after W warm-up steps.

The last stdout line is one JSON object:
  {"tokens_per_s": B*T / median step seconds, "step_s": median seconds per step, "losses": [...],
   "threads": N, "torch": version}
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

from llama_ref import causal_lm_loss, load_model  # noqa: E402

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory (config.json + safetensors)")
    ap.add_argument("--batch", required=True, help="batch.json: input_ids, attention_mask, position_ids, labels")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # LoRA A init

    model = load_model(a.model, torch.float32)
    model.add_lora(a.rank, a.alpha, ALL7)  # freezes the base weights
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)

    with open(a.batch) as f:
        b = json.load(f)
    ids = torch.tensor(b["input_ids"], dtype=torch.int64)
    mask = torch.tensor(b["attention_mask"], dtype=torch.int64)
    pos = torch.tensor(b["position_ids"], dtype=torch.int64)
    labels = torch.tensor(b["labels"], dtype=torch.int64)
    B, T = ids.shape

    def step():
        logits = model(ids, mask, pos)  # [B, T, V]
        loss = causal_lm_loss(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(a.warmup):
        step()
    losses, times = [], []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    dt = sum(times)
    median = sorted(times)[len(times) // 2]  # robust to a shared, noisy machine

    n_train = sum(p.numel() for p in trainable)
    print(f"torch {torch.__version__}, {a.threads} threads, batch {B}x{T}, {n_train} LoRA parameters, "
          f"{a.steps} steps in {dt:.3f} s", file=sys.stderr)
    print(json.dumps({
        "tokens_per_s": B * T / median,
        "step_s": median,
        "losses": losses,
        "threads": a.threads,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
