#!/usr/bin/python3
"""End-to-end oracle of `paft eval`: the harness's tasks (harness_ref.py, b281b09 semantics) answered
by the harness's language model over the PyTorch reference (lm_ref.py: the real tokenizer, float64).

    eval_ref.py --data DATA_DIR --runs runs.json --model MODEL_DIR --npm NPM_DIR --out out.json

runs.json as harness_ref.py takes it. Every request the runs make is collected first, answered by
lm_ref in one go, and the runs are then scored on those answers. out.json:
  {"runs": harness_ref's entries, "loglikelihood": [{"context", "continuation", "logprob",
   "is_greedy", "margin"}, ...], "greedy": [{"context", "text", "margin"}, ...],
   "choice_margin": the smallest gap between a document's best and second-best choice score
   (log-likelihood, and per character for acc_norm) over every multiple-choice document}
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness_ref  # noqa: E402
import lm_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--npm", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.runs) as f:
        specs = json.load(f)

    # Pass 1: the requests (answered by the stand-in, whose answers are dropped).
    pairs, greedy = {}, {}

    def record_ll(context, continuation):
        pairs.setdefault((context, continuation), len(pairs))
        return harness_ref.standin_loglikelihood(context, continuation)

    def record_greedy(context, until, max_gen_toks):
        greedy.setdefault((context, tuple(until), max_gen_toks), len(greedy))
        return harness_ref.standin_greedy(context, until)

    for spec in specs:
        harness_ref.run(spec, args.data, (record_ll, record_greedy))

    request = {"model": args.model, "tokenizer": "llama2", "max_length": None, "add_special_tokens": False,
               "loglikelihood": [list(p) for p in pairs],
               "greedy": [{"context": c, "until": list(u), "max_gen_toks": m} for c, u, m in greedy]}
    answers = lm_ref.answer(request, args.npm)
    ll = {p: answers["loglikelihood"][i] for p, i in pairs.items()}
    text = {g: answers["greedy"][i]["text"] for g, i in greedy.items()}

    # Pass 2: scored on the reference's answers.
    scored = []

    def answer_ll(context, continuation):
        a = ll[(context, continuation)]
        scored.append(a["logprob"])
        return a["logprob"], a["is_greedy"]

    def answer_greedy(context, until, max_gen_toks):
        return text[(context, tuple(until), max_gen_toks)]

    runs = [harness_ref.run(spec, args.data, (answer_ll, answer_greedy)) for spec in specs]
    out = {"runs": runs,
           "loglikelihood": [dict(context=c, continuation=k, **ll[(c, k)]) for c, k in pairs],
           "greedy": [{"context": c, "text": text[(c, u, m)], "margin": answers["greedy"][i]["margin"]}
                      for (c, u, m), i in greedy.items()]}
    with open(args.out, "w") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
