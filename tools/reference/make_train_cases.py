#!/usr/bin/python3
"""Writes the training-objective cases that tests/test-objectives.cpp compares paft against.

Usage: /usr/bin/python3 tools/reference/make_train_cases.py --out build/testdata/train [--force]

Each case folder holds
  model/                 a tiny random model (as make_cases.py writes them; stored as float32)
  adapter/               a PEFT LoRA adapter with random A and NONZERO random B, so the policy
                         differs from the reference (the same model with the adapter off)
  pairs.json             [{"prompt_ids", "chosen_ids", "rejected_ids"}] of different lengths
  sft.json               [{"input_ids", "labels"}] (labels -100 on a masked prefix)
  runs.json              the preference-loss settings of each run (name, loss, beta, ...) and the
                         SFT + L1 settings (lambda)
  expected.safetensors   float64 values:
      {run}.loss, {run}.{metric}       the step's mean loss and TRL's logged metrics (batch means)
      {run}.grad.{PEFT key}            d(loss)/d(every lora_A / lora_B)
      sft.ce, sft.l1, sft.loss         mean token cross-entropy, sum |s B A|, ce + lambda * l1
      sft.grad.{PEFT key}              d(sft.loss)/d(...)
      l1.grad.{PEFT key}               d(lambda * sft.l1)/d(...) (torch's sign(0) = 0 subgradient)

The losses are written here from TRL's documented formulas (DPOTrainer's sigmoid / ipo / hinge /
robust, CPOTrainer's simpo with cpo_alpha = 0, ORPOTrainer's odds-ratio loss), not from paft's
code; the log-probabilities and gradients come from the float64 reference model and autograd.
The preference batch is built independently as TRL's collator does: rows [chosen..., rejected...],
each prompt + completion, right-padded, position ids 0..T-1 (what the model uses when none are
given), a completion mask that picks each row's completion tokens.
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases_cli  # noqa: E402
import st  # noqa: E402
from llama_ref import IGNORE_INDEX, CausalLM, ModelConfig, causal_lm_loss, load_adapter, load_model  # noqa: E402
from make_cases import ALL7, hf_config, random_weights  # noqa: E402

PAD_ID = 0
L1_LAMBDA = 0.001

# pairs: (prompt, chosen, rejected) token counts; sft: (tokens, masked prefix) per example.
CASES = [
    dict(
        name="llama_pairs",
        arch="llama",
        config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=100, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
        dtype="float32",
        lora=dict(r=4, lora_alpha=8, target_modules=ALL7, use_rslora=False),
        pairs=[(4, 5, 3), (2, 3, 6), (6, 2, 2), (1, 7, 4), (3, 4, 5)],
        sft=[(9, 3), (6, 0), (11, 5)],
    ),
    dict(
        name="qwen2_pairs",
        arch="qwen2",
        config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
                    num_key_value_heads=2, vocab_size=130, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768,
                    max_window_layers=2),
        dtype="float32",
        lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], use_rslora=True),
        pairs=[(5, 6, 2), (3, 2, 8), (7, 4, 4), (2, 5, 3)],
        sft=[(7, 2), (12, 4)],
    ),
]

# The preference runs of every case. hinge's beta is chosen from the data (see hinge_beta).
RUNS = [
    dict(name="sigmoid", loss="sigmoid", beta=0.1),
    dict(name="ipo", loss="ipo", beta=0.5),
    dict(name="hinge", loss="hinge", beta=None),
    dict(name="robust", loss="robust", beta=0.1, label_smoothing=0.1),
    dict(name="simpo", loss="simpo", beta=2.0, simpo_gamma=0.5, label_smoothing=0.0),
    dict(name="orpo", loss="orpo", beta=0.1, orpo_prompt_nll=True),
    dict(name="orpo_completion_nll", loss="orpo", beta=0.1, orpo_prompt_nll=False),
]

METRICS = ["reward_chosen", "reward_rejected", "reward_accuracy", "reward_margin", "logps_chosen",
           "logps_rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen"]


# ----------------------------------------------------------------------------- inputs


def random_ids(n, vocab, gen):
    return torch.randint(3, vocab, (n,), generator=gen).tolist()


def make_pairs(case, gen):
    V = case["config"]["vocab_size"]
    return [{"prompt_ids": random_ids(p, V, gen), "chosen_ids": random_ids(c, V, gen),
             "rejected_ids": random_ids(r, V, gen)} for p, c, r in case["pairs"]]


def make_sft(case, gen):
    V = case["config"]["vocab_size"]
    out = []
    for n, masked in case["sft"]:
        ids = random_ids(n, V, gen)
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * masked + ids[masked:]})
    return out


def write_adapter(model, lcfg, adir, gen):
    """A PEFT adapter with A ~ 0.2 N(0,1) and B ~ 0.1 N(0,1) (B nonzero, unlike PEFT's init)."""
    os.makedirs(adir)
    acfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "", "r": lcfg["r"],
            "lora_alpha": lcfg["lora_alpha"], "lora_dropout": 0.0, "target_modules": lcfg["target_modules"],
            "use_rslora": lcfg["use_rslora"], "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True,
            "modules_to_save": None}
    with open(os.path.join(adir, "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=2)
        f.write("\n")
    tensors = {}
    for name, mod in model.lora_targets(lcfg["target_modules"]):
        key = f"base_model.model.{name}"
        tensors[key + ".lora_A.weight"] = 0.2 * torch.randn(lcfg["r"], mod.in_features, generator=gen,
                                                            dtype=torch.float64)
        tensors[key + ".lora_B.weight"] = 0.1 * torch.randn(mod.out_features, lcfg["r"], generator=gen,
                                                            dtype=torch.float64)
    st.save_file(tensors, os.path.join(adir, "adapter_model.safetensors"), metadata={"format": "pt"},
                 dtype=torch.float32)


# ----------------------------------------------------------------------------- log-probabilities


def preference_rows(pairs, prompt_nll):
    """TRL's collated batch: rows chosen_0..chosen_{n-1}, rejected_0..rejected_{n-1}, right-padded.
    Returns input_ids, attention_mask, position_ids [2n, T], completion_mask [2n, T] (1 on the
    completion's tokens) and nll_labels [n, T] of the chosen rows (-100 where no NLL is taken)."""
    seqs, comp = [], []
    for which in ("chosen_ids", "rejected_ids"):
        for p in pairs:
            seqs.append(p["prompt_ids"] + p[which])
            comp.append([0] * len(p["prompt_ids"]) + [1] * len(p[which]))
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), PAD_ID, dtype=torch.int64)
    mask = torch.zeros(len(seqs), T, dtype=torch.int64)
    cmask = torch.zeros(len(seqs), T, dtype=torch.int64)
    for b, (s, c) in enumerate(zip(seqs, comp)):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
        cmask[b, :len(c)] = torch.tensor(c)
    pos = torch.arange(T)[None, :].expand(len(seqs), T).contiguous()
    n = len(pairs)
    # ORPO's NLL labels: the whole chosen sequence (padding masked), or its completion only
    keep = mask[:n] if prompt_nll else cmask[:n]
    nll_labels = torch.where(keep.bool(), ids[:n], torch.full_like(ids[:n], IGNORE_INDEX))
    return ids, mask, pos, cmask, nll_labels


def completion_logps(logits, ids, cmask):
    """Summed log-probability of each row's completion tokens and their counts: token t is
    predicted at t-1, so the batch's first column never counts."""
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # [2n, T-1]
    m = cmask[:, 1:].to(lp.dtype)
    return (lp * m).sum(-1), m.sum(-1)


def log1mexp(x):
    """log(1 - exp(x)), x < 0 (Maechler's two-branch form, as TRL's ORPO uses)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


# ----------------------------------------------------------------------------- losses (TRL's formulas)


def hinge_beta(delta):
    """A beta that leaves some pairs inside the hinge (1 - beta*delta > 0) and some outside, each
    well away from the kink: 1/beta halfway between two consecutive positive deltas."""
    pos = sorted(d for d in delta.tolist() if d > 0)
    if not pos:
        return 0.1
    if len(pos) == 1:
        return 2.0 / pos[0]
    k = len(pos) // 2
    return 2.0 / (pos[k - 1] + pos[k])


def preference_loss(run, pol, n_tok, ref, nll):
    """Per-batch mean loss (the step's loss) and TRL's logged metrics (batch means).
    pol, ref: summed completion logps [2n] (ref None for simpo / orpo); n_tok: counts [2n];
    nll: ORPO's mean token cross-entropy of the chosen rows."""
    n = pol.shape[0] // 2
    beta, eps = run["beta"], run.get("label_smoothing", 0.0)
    pc, pr = pol[:n], pol[n:]
    nc, nr = n_tok[:n], n_tok[n:]
    m = {}
    if run["loss"] in ("sigmoid", "ipo", "hinge", "robust"):
        lc, lrj = pc - ref[:n], pr - ref[n:]  # log-ratios policy / reference
        delta = lc - lrj
        if run["loss"] == "sigmoid":
            losses = -F.logsigmoid(beta * delta)
        elif run["loss"] == "ipo":
            delta_avg = lc / nc - lrj / nr
            losses = (delta_avg - 1 / (2 * beta)) ** 2
        elif run["loss"] == "hinge":
            losses = torch.relu(1 - beta * delta)
        else:
            losses = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
        rc, rr = beta * lc.detach(), beta * lrj.detach()
        m["logps_chosen"], m["logps_rejected"] = pc.detach().mean(), pr.detach().mean()
        loss = losses.mean()
    else:
        ac, ar = pc / nc, pr / nr  # average completion logps
        if run["loss"] == "simpo":
            z = beta * (ac - ar) - run["simpo_gamma"]
            loss = (-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)).mean()
        else:  # orpo
            log_odds = (ac - ar) - (log1mexp(ac) - log1mexp(ar))
            ratio = F.logsigmoid(log_odds)
            loss = nll - beta * ratio.mean()
            m["nll_loss"] = nll.detach()
            m["log_odds_ratio"] = ratio.detach().mean()
            m["log_odds_chosen"] = log_odds.detach().mean()
        rc, rr = beta * ac.detach(), beta * ar.detach()
        m["logps_chosen"], m["logps_rejected"] = ac.detach().mean(), ar.detach().mean()
    m["reward_chosen"], m["reward_rejected"] = rc.mean(), rr.mean()
    m["reward_accuracy"] = (rc > rr).to(rc.dtype).mean()
    m["reward_margin"] = (rc - rr).mean()
    return loss, m


def lora_grads(model, prefix):
    return {f"{prefix}.grad.{k}": p.grad.detach().clone() for k, p in model.lora_parameters().items()}


def zero_grads(model):
    for p in model.lora_parameters().values():
        p.grad = None


def delta_l1(model):
    """sum over adapted modules of |s B A| (the PAFT penalty before lambda)."""
    total = 0
    for mod in model.modules():
        if getattr(mod, "lora_A", None) is not None:
            total = total + (mod.lora_scaling * (mod.lora_B.weight @ mod.lora_A.weight)).abs().sum()
    return total


# ----------------------------------------------------------------------------- one case


def write_case(case, root, seed):
    d = os.path.join(root, case["name"])
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir, adir = os.path.join(d, "model"), os.path.join(d, "adapter")
    os.makedirs(mdir)
    gen = torch.Generator().manual_seed(seed)

    cfgd = hf_config(case)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfgd, f, indent=2)
        f.write("\n")
    weights = random_weights(CausalLM(ModelConfig(cfgd), torch.float64), gen)
    st.save_file(weights, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"}, dtype=torch.float32)

    pairs, sft = make_pairs(case, gen), make_sft(case, gen)
    for name, value in (("pairs.json", pairs), ("sft.json", sft)):
        with open(os.path.join(d, name), "w") as f:
            json.dump(value, f)
            f.write("\n")

    # Reference: the stored model without the adapter; policy: the same model with it.
    ref_model = load_model(mdir, torch.float64)
    policy = load_model(mdir, torch.float64)
    write_adapter(policy, case["lora"], adir, gen)
    load_adapter(policy, adir)  # reloaded from disk: exactly the stored float32 values

    exp = {}
    runs = []
    for run in RUNS:
        run = dict(run)
        prompt_nll = run.get("orpo_prompt_nll", True)
        ids, mask, pos, cmask, nll_labels = preference_rows(pairs, prompt_nll)
        with torch.no_grad():
            ref, _ = completion_logps(ref_model(ids, mask, pos), ids, cmask)
        zero_grads(policy)
        logits = policy(ids, mask, pos)
        pol, n_tok = completion_logps(logits, ids, cmask)
        if run["beta"] is None:  # hinge
            delta = (pol.detach() - ref)[:len(pairs)] - (pol.detach() - ref)[len(pairs):]
            run["beta"] = hinge_beta(delta)
            active = int((1 - run["beta"] * delta > 0).sum())
            assert 0 < active < len(pairs) or not (delta > 0).any(), delta
        nll = causal_lm_loss(logits[:len(pairs)], nll_labels)
        loss, metrics = preference_loss(run, pol, n_tok, ref, nll)
        loss.backward()
        exp[f"{run['name']}.loss"] = loss.detach().reshape(1)
        for k in METRICS:
            if k in metrics:
                exp[f"{run['name']}.{k}"] = metrics[k].reshape(1)
        exp.update(lora_grads(policy, run["name"]))
        runs.append({"name": run["name"], "loss": run["loss"], "beta": run["beta"],
                     "label_smoothing": run.get("label_smoothing", 0.0),
                     "simpo_gamma": run.get("simpo_gamma", 0.5), "orpo_prompt_nll": prompt_nll})
        print(f"  {run['name']}: loss {loss.item():.6f} beta {run['beta']:.6g}")

    # SFT + L1: HF's causal-LM loss on the right-padded examples plus lambda * sum |s B A|.
    T = max(len(e["input_ids"]) for e in sft)
    ids = torch.full((len(sft), T), PAD_ID, dtype=torch.int64)
    mask = torch.zeros(len(sft), T, dtype=torch.int64)
    labels = torch.full((len(sft), T), IGNORE_INDEX, dtype=torch.int64)
    for b, e in enumerate(sft):
        L = len(e["input_ids"])
        ids[b, :L], mask[b, :L], labels[b, :L] = torch.tensor(e["input_ids"]), 1, torch.tensor(e["labels"])
    pos = torch.arange(T)[None, :].expand(len(sft), T).contiguous()
    zero_grads(policy)
    ce = causal_lm_loss(policy(ids, mask, pos), labels)
    l1 = delta_l1(policy)
    total = ce + L1_LAMBDA * l1
    total.backward()
    exp["sft.ce"], exp["sft.l1"], exp["sft.loss"] = ce.detach().reshape(1), l1.detach().reshape(1), \
        total.detach().reshape(1)
    exp.update(lora_grads(policy, "sft"))
    zero_grads(policy)
    (L1_LAMBDA * delta_l1(policy)).backward()
    exp.update(lora_grads(policy, "l1"))
    print(f"  sft: ce {ce.item():.6f} l1 {l1.item():.6f}")

    with open(os.path.join(d, "runs.json"), "w") as f:
        json.dump({"preference": runs, "sft": {"l1_lambda": L1_LAMBDA}}, f, indent=2)
        f.write("\n")
    st.save_file(exp, os.path.join(d, "expected.safetensors"), metadata={"case": case["name"]}, dtype=torch.float64)


def main():
    started = cases_cli.start(__doc__, "training cases", "train_cases.json", ["make_train_cases.py", "make_cases.py"])
    if started is None:
        return
    args, stamp = started
    for seed, case in enumerate(CASES):
        print(case["name"])
        write_case(case, args.out, 2000 + seed)
    with open(stamp, "w") as f:
        json.dump([c["name"] for c in CASES], f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
