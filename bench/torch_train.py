#!/usr/bin/python3
"""PyTorch peer of paft's training benchmark (bench/bench_train.cpp): eager PyTorch on the CPU,
float32, the loop a Hugging Face / TRL trainer runs per optimizer step, without its overheads.

    /usr/bin/python3 bench/torch_train.py --model DIR --data DATA.json --method sft|dpo \
        --threads N --steps S --warmup W [--rank 16 --alpha 32 --dropout 0.05 --lr LR \
        --l1-lambda 1e-4 --beta 0.1 --max-grad-norm 1]

The model is tools/reference/llama_ref.py's (HF semantics: nn.Linear projections, batched-matmul
attention with an additive mask, full logits), frozen, with LoRA on q,k,v,o,gate,up,down (PEFT's
init: A ~ U(+-1/sqrt(in)), B = 0; PEFT's dropout on the LoRA branch's input, one mask per module).

DATA.json holds one optimizer step's examples, trained on at every step (paft's Trainer gets the
same examples, so both see the same batches up to row order):
  sft  {"examples": [[ids...], ...]}                           labels = ids (every token trained)
  dpo  {"pairs": [{"prompt": [...], "chosen": [...], "rejected": [...]}, ...]}

One step, as the trainers do it:
  sft  forward, mean token cross-entropy + l1_lambda * sum over modules of ||s B A||_1 (torch ops
       on the LoRA weights, autograd's subgradient), backward, clip_grad_norm_, AdamW, zero_grad
  dpo  one forward of the 2n rows (chosen rows, then rejected rows, right-padded), summed
       completion log-probs, sigmoid DPO loss against reference log-probs computed once before
       training with the adapter off (not timed: paft computes them once too), backward, clip,
       AdamW, zero_grad
The learning rate follows the linear schedule without warm-up over W + S steps (paft's default);
AdamW has weight_decay 0 (TrainingArguments' default, which paft uses).

Timing: W warm-up steps, then S timed steps. The last stdout line is one JSON object:
  {"tokens_per_s": real tokens of the timed steps / their seconds, "step_s": mean seconds a step,
   "median_step_s", "phases": {name: mean seconds a step}, "reference_s", "losses": [every step],
   "tokens_per_step", "threads", "torch": version}
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))

import llama_ref  # noqa: E402
from llama_ref import IGNORE_INDEX, causal_lm_loss, load_model  # noqa: E402

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSwitch:
    """PEFT's LoRA branch with dropout, replacing llama_ref.Linear.forward (which has no dropout):
    y = x W^T + b + s * B(A(dropout(x))). `enabled` off gives the base model (the DPO reference,
    as TRL's PEFT case disables the adapter)."""

    enabled = True
    dropout = 0.0

    @staticmethod
    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if self.lora_A is not None and LoraSwitch.enabled:
            xd = F.dropout(x, LoraSwitch.dropout, self.training) if LoraSwitch.dropout > 0 else x
            y = y + self.lora_B(self.lora_A(xd)) * self.lora_scaling
        return y


def right_padded(rows, pad_id=0):
    """[n] id lists -> input_ids, attention_mask, position_ids [n, T] (positions 0.. as HF gives
    a right-padded batch)."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), T), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        mask[i, : len(r)] = 1
    pos = torch.arange(T, dtype=torch.int64)[None].expand(len(rows), T).contiguous()
    return ids, mask, pos


def l1_of_deltas(modules):
    """sum over adapted modules of ||s B A||_1, each delta [out, in] formed whole."""
    return sum((m.lora_scaling * (m.lora_B.weight @ m.lora_A.weight)).abs().sum() for m in modules)


def completion_logps(logits, labels):
    """Summed log p of each row's target tokens: logits[:, t] predicts labels[:, t+1] (labels
    -100 on prompt and padding). Gather minus logsumexp, as TRL's selective_log_softmax does for
    float32, rather than a full log_softmax tensor."""
    tgt = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # [n, T]
    valid = tgt != IGNORE_INDEX
    picked = logits.gather(-1, tgt.clamp(min=0)[..., None])[..., 0]  # [n, T]
    lp = picked - torch.logsumexp(logits, dim=-1)
    return torch.where(valid, lp, torch.zeros_like(lp)).sum(-1)  # [n]


class Clock:
    """Mean seconds per named phase over the timed steps."""

    def __init__(self):
        self.sums, self.timing = {}, False
        self.t = time.perf_counter()

    def lap(self, name):
        now = time.perf_counter()
        if self.timing:
            self.sums[name] = self.sums.get(name, 0.0) + now - self.t
        self.t = now


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory (config.json + safetensors)")
    ap.add_argument("--data", required=True, help="DATA.json: one step's examples (see above)")
    ap.add_argument("--method", choices=["sft", "dpo"], required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=None, help="default TRL's: sft 2e-5, dpo 1e-6")
    ap.add_argument("--l1-lambda", type=float, default=1e-4, help="sft: the PAFT penalty's weight")
    ap.add_argument("--beta", type=float, default=0.1, help="dpo")
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # LoRA A init and dropout masks
    llama_ref.Linear.forward = LoraSwitch.forward
    LoraSwitch.dropout = a.dropout

    model = load_model(a.model, torch.float32)
    model.add_lora(a.rank, a.alpha, ALL7)  # freezes the base weights
    lora_modules = [m for _, m in model.lora_targets(ALL7)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    base_lr = a.lr if a.lr is not None else (2e-5 if a.method == "sft" else 1e-6)
    opt = torch.optim.AdamW(trainable, lr=base_lr, weight_decay=0.0)
    total_steps = a.warmup + a.steps

    with open(a.data) as f:
        data = json.load(f)

    reference_s = 0.0
    if a.method == "sft":
        rows = data["examples"]
        ids, mask, pos = right_padded(rows)
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    else:
        pairs = data["pairs"]
        seqs = [p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs]
        prompt_lens = [len(p["prompt"]) for p in pairs] * 2
        ids, mask, pos = right_padded(seqs)
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
        for i, n in enumerate(prompt_lens):
            labels[i, :n] = IGNORE_INDEX
        n = len(pairs)
        # The reference: once, before training, the adapter off, no dropout (eval mode).
        t0 = time.perf_counter()
        model.eval()
        LoraSwitch.enabled = False
        with torch.no_grad():
            ref = completion_logps(model(ids, mask, pos), labels)
        LoraSwitch.enabled = True
        reference_s = time.perf_counter() - t0
    model.train()
    tokens_per_step = int(mask.sum())

    clock = Clock()

    def step(k):
        clock.lap("other")
        logits = model(ids, mask, pos)  # [rows, T, V]
        if a.method == "sft":
            loss = causal_lm_loss(logits, labels)
            clock.lap("forward")
            if a.l1_lambda > 0:
                loss = loss + a.l1_lambda * l1_of_deltas(lora_modules)
            clock.lap("l1")
        else:
            lp = completion_logps(logits, labels)
            delta = (lp[:n] - ref[:n]) - (lp[n:] - ref[n:])
            loss = -F.logsigmoid(a.beta * delta).mean()
            clock.lap("forward")
        loss.backward()
        clock.lap("backward")
        torch.nn.utils.clip_grad_norm_(trainable, a.max_grad_norm)
        for g in opt.param_groups:  # transformers' linear schedule, no warm-up
            g["lr"] = base_lr * (total_steps - k) / total_steps
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.lap("optimizer")
        return loss.item()

    losses, times = [], []
    for k in range(total_steps):
        clock.timing = k >= a.warmup
        t0 = time.perf_counter()
        losses.append(step(k))
        if clock.timing:
            times.append(time.perf_counter() - t0)
    dt = sum(times)
    print(f"torch {torch.__version__}, {a.threads} threads, {a.method}, rows {ids.shape[0]}x{ids.shape[1]}, "
          f"{sum(p.numel() for p in trainable)} LoRA parameters, {a.steps} steps in {dt:.3f} s "
          f"(+ {a.warmup} warm-up), reference {reference_s:.3f} s", file=sys.stderr)
    print(json.dumps({
        "tokens_per_s": tokens_per_step * len(times) / dt,
        "step_s": dt / len(times),
        "median_step_s": sorted(times)[len(times) // 2],
        "phases": {k: v / len(times) for k, v in clock.sums.items()},
        "reference_s": reference_s,
        "losses": losses,
        "tokens_per_step": tokens_per_step,
        "threads": a.threads,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
