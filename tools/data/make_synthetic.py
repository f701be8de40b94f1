#!/usr/bin/python3
"""Writes the pre-tokenized example datasets of the main job (examples/*-tokens.jsonl).

    python3 tools/data/make_synthetic.py examples

Token ids for the `tiny` preset (vocabulary 1000). SFT rows follow a fixed cycle over the tokens
10..17 (next = 10 + (3 * (prev - 10) + 1) mod 8), which a LoRA adapter can learn; preference pairs
prefer the cycle's continuation of a prompt over random tokens. Seeded: the same files every time.
"""

import json
import os
import random
import sys


def cycle(first, n):
    seq = [first]
    while len(seq) < n:
        seq.append(10 + (3 * (seq[-1] - 10) + 1) % 8)
    return seq


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples"
    rng = random.Random(42)
    with open(os.path.join(out, "sft-tokens.jsonl"), "w") as f:
        for _ in range(128):
            f.write(json.dumps({"input_ids": cycle(rng.randrange(10, 18), rng.randrange(24, 40))}) + "\n")
    with open(os.path.join(out, "pref-tokens.jsonl"), "w") as f:
        for _ in range(128):
            seq = cycle(rng.randrange(10, 18), 8 + rng.randrange(8, 16))
            chosen = seq[8:]
            rejected = [rng.randrange(100, 900) for _ in chosen]
            f.write(json.dumps({"prompt_input_ids": seq[:8], "chosen_input_ids": chosen,
                                "rejected_input_ids": rejected}) + "\n")


if __name__ == "__main__":
    main()
