#!/usr/bin/python3
"""Writes the cases the optimizer tests (tests/test-optimizer.cpp) compare against.

    /usr/bin/python3 tools/reference/make_optimizer_cases.py --out DIR [--force]

DIR/ holds
  vectors.json          the optimizer cases: [{name, optimizer, lrs (one per step), beta1, beta2,
                        eps, momentum, weight_decay}], and the clipping cases: [{name, max_norm,
                        norm}] with the norm from float64 (the float32 values upcast)
  vectors.safetensors   F32, as torch computes them in float32:
      <case>.params0 [n], <case>.grad.<t> [n], <case>.params.<t> [n] (after step t, t = 1..steps),
      <case>.state.<buffer> [n] (torch's state after the last step: exp_avg, exp_avg_sq,
      momentum_buffer)
      clip.<case>.grads [n] (several tensors, flattened and concatenated), clip.<case>.clipped [n]
  trajectory/           a training run in float64: model/, adapter/ (PEFT, F32), batch.json,
                        trajectory.json (hyper-parameters: lr, weight_decay, betas, eps,
                        max_grad_norm, schedule, warmup_steps, total_steps, steps) and
                        expected.safetensors (F64): losses [steps] (before each step), grad_norms
                        [steps] (before clipping), final.<PEFT key> (the adapter after the run)

Every step of the run: loss = mean token cross-entropy, backward, clip_grad_norm_, AdamW step at
the learning rate of a linear schedule with warmup (torch.optim.lr_scheduler.LambdaLR).
Everything is seeded and single-threaded; when DIR/done.json is newer than the scripts the run
does nothing.
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
from llama_ref import causal_lm_loss, load_adapter, load_model  # noqa: E402
from make_cases import ALL7, make_batch, write_adapter, write_model  # noqa: E402

STEPS = 10  # optimizer steps per vector case
N = 1000  # parameters per vector case

# Each case: the optimizer's constructor arguments; the learning rate changes every step.
OPTIMIZER_CASES = [
    dict(name="adamw_default", optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    dict(name="adamw_betas_decay", optimizer="adamw", lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
    dict(name="adamw_no_decay", optimizer="adamw", lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0),
    dict(name="sgd_plain", optimizer="sgd", lr=1e-1, momentum=0.0, weight_decay=0.0),
    dict(name="sgd_decay", optimizer="sgd", lr=1e-1, momentum=0.0, weight_decay=0.05),
    dict(name="sgd_momentum", optimizer="sgd", lr=5e-2, momentum=0.9, weight_decay=0.0),
    dict(name="sgd_momentum_decay", optimizer="sgd", lr=5e-2, momentum=0.8, weight_decay=0.01),
]

# Each case: the shapes of the tensors clipped together (more than one chunk of paft's norm
# sum, 8192 values), the gradients' scale and max_norm.
CLIP_CASES = [
    dict(name="clipped", shapes=[(300,), (17, 40), (20000,)], scale=0.05, max_norm=1.0),
    dict(name="unclipped", shapes=[(300,), (17, 40), (20000,)], scale=0.001, max_norm=1.0),
    dict(name="large_max", shapes=[(5, 7), (9000,)], scale=1.0, max_norm=500.0),
]

# The training run: a small GQA llama with LoRA on all seven projections, a batch with padding
# and a masked prompt (labels -100).
TRAJECTORY_CASE = dict(
    name="trajectory",
    arch="llama",
    config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=100, rms_norm_eps=1e-5, rope_theta=10000.0,
                tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
    dtype="float32", shards=1,
    B=3, T=10, lengths=[10, 8, 6], padding="right",
    lora=dict(r=4, lora_alpha=8, target_modules=ALL7, use_rslora=False),
)
TRAJECTORY = dict(steps=5, lr=1e-2, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-8, max_grad_norm=1.0,
                  schedule="linear", warmup_steps=2, total_steps=8)


def step_lrs(base):
    """The learning rate of each step: base times 1, 0.9, ... (a schedule of sorts)."""
    return [base * (1.0 - 0.1 * t) for t in range(STEPS)]


def make_optimizer(case, params):
    if case["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=case["lr"], betas=case["betas"], eps=case["eps"],
                                 weight_decay=case["weight_decay"])
    return torch.optim.SGD(params, lr=case["lr"], momentum=case["momentum"], weight_decay=case["weight_decay"])


def run_optimizer_case(case, gen, tensors):
    """torch's optimizer in float32 on one vector for STEPS steps with random gradients of a
    changing scale (down to 1e-6, where AdamW's eps matters)."""
    name = case["name"]
    p = torch.nn.Parameter(torch.randn(N, generator=gen, dtype=torch.float32))
    opt = make_optimizer(case, [p])
    lrs = step_lrs(case["lr"])
    tensors[f"{name}.params0"] = p.detach().clone()
    for t in range(1, STEPS + 1):
        scale = [1.0, 0.1, 1e-3, 1e-6][t % 4]
        g = torch.randn(N, generator=gen, dtype=torch.float32) * scale
        p.grad = g.clone()
        opt.param_groups[0]["lr"] = lrs[t - 1]
        opt.step()
        tensors[f"{name}.grad.{t}"] = g
        tensors[f"{name}.params.{t}"] = p.detach().clone()
    for key, value in opt.state[p].items():
        if isinstance(value, torch.Tensor) and value.numel() == N:
            tensors[f"{name}.state.{key}"] = value.detach().clone()
    betas = case.get("betas", (0.9, 0.999))
    return dict(name=name, optimizer=case["optimizer"], lrs=lrs, beta1=betas[0], beta2=betas[1],
                eps=case.get("eps", 1e-8), momentum=case.get("momentum", 0.0), weight_decay=case["weight_decay"])


def run_clip_case(case, gen, tensors):
    """torch.nn.utils.clip_grad_norm_ over several tensors: the float32 result, and the norm of
    the same values in float64."""
    grads = [torch.randn(shape, generator=gen, dtype=torch.float32) * case["scale"] for shape in case["shapes"]]
    params32 = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    params64 = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p32, p64, g in zip(params32, params64, grads):
        p32.grad = g.clone()
        p64.grad = g.double()
    torch.nn.utils.clip_grad_norm_(params32, case["max_norm"])
    norm = torch.nn.utils.clip_grad_norm_(params64, case["max_norm"]).item()
    tensors[f"clip.{case['name']}.grads"] = torch.cat([g.reshape(-1) for g in grads])
    tensors[f"clip.{case['name']}.clipped"] = torch.cat([p.grad.reshape(-1) for p in params32])
    return dict(name=case["name"], max_norm=case["max_norm"], norm=norm)


def linear_with_warmup(warmup, total):
    """transformers' get_linear_schedule_with_warmup factor, written from its formula."""
    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def write_trajectory(root, seed):
    """A few training steps in float64 from a random adapter, as a trainer would take them."""
    case, hp = TRAJECTORY_CASE, TRAJECTORY
    d = os.path.join(root, case["name"])
    mdir, adir = os.path.join(d, "model"), os.path.join(d, "adapter")
    os.makedirs(mdir)
    os.makedirs(adir)
    gen = torch.Generator().manual_seed(seed)
    write_model(case, mdir, gen)
    batch = make_batch(case, gen)
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in batch.items()}, f)
        f.write("\n")
    model = load_model(mdir, torch.float64)  # the stored values, upcast
    write_adapter(model, case["lora"], adir, gen)
    load_adapter(model, adir)  # freezes the base weights

    args = (batch["input_ids"], batch["attention_mask"], batch["position_ids"])
    params = list(model.lora_parameters().values())
    opt = torch.optim.AdamW(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                            weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_with_warmup(hp["warmup_steps"], hp["total_steps"]))
    losses, norms = [], []
    for _ in range(hp["steps"]):
        loss = causal_lm_loss(model(*args), batch["labels"])
        losses.append(loss.detach())
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, hp["max_grad_norm"]).detach())
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    exp = {"losses": torch.stack(losses), "grad_norms": torch.stack(norms)}
    for key, p in model.lora_parameters().items():
        exp[f"final.{key}"] = p.detach().clone()
    st.save_file(exp, os.path.join(d, "expected.safetensors"), dtype=torch.float64)
    with open(os.path.join(d, "trajectory.json"), "w") as f:
        json.dump(hp, f, indent=2)
        f.write("\n")
    return exp


def main():
    started = cases_cli.start(__doc__, "optimizer cases", "done.json", ["make_optimizer_cases.py", "make_cases.py"])
    if started is None:
        return
    args, stamp = started
    if os.path.isdir(os.path.join(args.out, TRAJECTORY_CASE["name"])):
        shutil.rmtree(os.path.join(args.out, TRAJECTORY_CASE["name"]))

    gen = torch.Generator().manual_seed(4242)
    tensors = {}
    optimizers = [run_optimizer_case(case, gen, tensors) for case in OPTIMIZER_CASES]
    clips = [run_clip_case(case, gen, tensors) for case in CLIP_CASES]
    st.save_file(tensors, os.path.join(args.out, "vectors.safetensors"), dtype=torch.float32)
    with open(os.path.join(args.out, "vectors.json"), "w") as f:
        json.dump({"optimizers": optimizers, "clips": clips}, f, indent=2)
        f.write("\n")
    exp = write_trajectory(args.out, 4343)
    print(f"optimizer cases: {len(optimizers)} optimizers, {len(clips)} clips; trajectory losses "
          f"{[round(v, 6) for v in exp['losses'].tolist()]}")
    with open(stamp, "w") as f:
        json.dump({"optimizers": [c["name"] for c in optimizers], "clips": [c["name"] for c in clips]}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
