#!/usr/bin/env python3
"""Reference for paft's PyRandom (src/eval/pyrandom.h): runs CPython's own random.Random.

    pyrandom_ref.py --spec spec.json --out out.json

spec.json: [{"seed": S, "ops": [["shuffle", n] | ["sample", n, k] | ["getrandbits", k] |
             ["randbelow", n], ...]}, ...]; each seed's ops run in order on one generator.
out.json:  [[result of each op], ...]: shuffle gives list(range(n)) shuffled, sample gives
           random.sample(range(n), k) (as a list, the same draws as a list population).
"""
import argparse
import json
import random


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with open(a.spec) as f:
        spec = json.load(f)
    out = []
    for case in spec:
        rnd = random.Random()
        rnd.seed(case["seed"])
        results = []
        for op in case["ops"]:
            if op[0] == "shuffle":
                items = list(range(op[1]))
                rnd.shuffle(items)
                results.append(items)
            elif op[0] == "sample":
                results.append(rnd.sample(list(range(op[1])), op[2]))
            elif op[0] == "getrandbits":
                results.append(str(rnd.getrandbits(op[1])))  # as text: JSON numbers lose bits above 2^53
            elif op[0] == "randbelow":
                results.append(rnd._randbelow(op[1]))
            else:
                raise ValueError(op[0])
        out.append(results)
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
