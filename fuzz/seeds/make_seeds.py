#!/usr/bin/python3
"""Writes the hand-made seed inputs of every fuzz harness into fuzz/corpus/NAME/seed-*, for the
harnesses that have no corpus yet.

The seeds are valid (or nearly valid) files of each kind, taken from the repository's own
fixtures and written here by hand, so libFuzzer starts from inputs that reach deep into each
parser. scripts/fuzz.sh runs this before fuzzing; the corpora it then minimizes are committed.
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus")


# Seeds start a corpus: a harness whose corpus exists (committed, minimized) keeps it as it is.
STARTED = {h for h in (os.listdir(OUT) if os.path.isdir(OUT) else []) if os.listdir(os.path.join(OUT, h))}


def seed(harness, name, data):
    if harness in STARTED:
        return
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    """tensors: (name, dtype, shape, bytes) in data order."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


# ---- safetensors ---------------------------------------------------------------------------
f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
seed("safetensors", "f32", safetensors([("w", "F32", [2, 2], f32)], {"format": "pt"}))
seed("safetensors", "mixed", safetensors([
    ("a.weight", "BF16", [3], struct.pack("<3H", 0x3F80, 0xC000, 0x7F80)),
    ("b.weight", "F16", [1, 2], struct.pack("<2H", 0x3C00, 0xFC00)),
    ("c", "F64", [1], struct.pack("<d", 2.5)),
    ("empty", "F32", [0, 4], b""),
    ("i", "I32", [2], struct.pack("<2i", 7, -7)),
]))
seed("safetensors", "scalar", safetensors([("s", "F32", [], struct.pack("<f", 1.0))]))
seed("safetensors", "empty", safetensors([]))

# ---- config.json ---------------------------------------------------------------------------
tiny = json.loads(read("models/paft-tiny/config.json"))
seed("model_config", "tiny", json.dumps(tiny, indent=2))
mistral = dict(tiny, architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=4096,
               num_key_value_heads=2, head_dim=None)
seed("model_config", "mistral", json.dumps(mistral))
qwen = dict(tiny, architectures=["Qwen2ForCausalLM"], model_type="qwen2", attention_bias=True,
            tie_word_embeddings=True, rope_theta=1000000.0, use_sliding_window=False)
seed("model_config", "qwen2", json.dumps(qwen))
llama3 = dict(tiny, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
              eos_token_id=[2, 3], torch_dtype="bfloat16")
seed("model_config", "llama3", json.dumps(llama3))

# ---- adapter_config.json -------------------------------------------------------------------
adapter = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "models/paft-tiny",
           "r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "use_rslora": False,
           "use_dora": False, "fan_in_fan_out": False, "layers_to_transform": None, "modules_to_save": None,
           "rank_pattern": {}, "alpha_pattern": {},
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
seed("adapter_config", "peft", json.dumps(adapter, indent=2))
seed("adapter_config", "all-linear", json.dumps(dict(adapter, target_modules="all-linear", r=4, use_rslora=True)))
seed("adapter_config", "regex", json.dumps(dict(adapter, target_modules=".*\\.(q|v)_proj")))

# ---- tokenizer.json ------------------------------------------------------------------------
seed("tokenizer_json", "tiny", read("models/paft-tiny/tokenizer.json"))
small = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True},
                     {"id": 1, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": {"<s>": 0, "</s>": 1, "H": 2, "e": 3, "l": 4, "o": 5, "He": 6, "ll": 7, "Hell": 8, "Hello": 9,
                        "Ġ": 10, ",": 11, "!": 12, "w": 13, "r": 14, "d": 15},
              "merges": ["H e", "l l", "He ll", "Hell o"]}}
seed("tokenizer_json", "bytelevel", json.dumps(small))
sp = dict(small, normalizer={"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                                  {"type": "Replace", "pattern": {"String": " "},
                                                                   "content": "▁"}]},
          pre_tokenizer=None,
          decoder={"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                    {"type": "ByteFallback"}, {"type": "Fuse"},
                                                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
sp["model"] = dict(small["model"], byte_fallback=True, unk_token="<s>",
                   vocab={"<s>": 0, "</s>": 1, "<0x41>": 2, "▁": 3, "a": 4, "b": 5, "▁a": 6, "ab": 7},
                   merges=[["▁", "a"], ["a", "b"]])
seed("tokenizer_json", "sentencepiece", json.dumps(sp))

# ---- tokenizer_config.json -----------------------------------------------------------------
tiny_tc = json.loads(read("models/paft-tiny/tokenizer_config.json"))
seed("tokenizer_config", "tiny", json.dumps(tiny_tc, indent=2))
zephyr = read("tests/data/datasets/zephyr.jinja").decode()
seed("tokenizer_config", "zephyr", json.dumps(dict(tiny_tc, chat_template=zephyr, bos_token="<s>",
                                                   eos_token={"content": "</s>", "lstrip": False},
                                                   pad_token=None, additional_special_tokens=["<unk>"],
                                                   clean_up_tokenization_spaces=True)))
seed("tokenizer_config", "named-templates",
     json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                 "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}"
                                                                   "{{ m.content }}{% endfor %}"},
                                   {"name": "tool_use", "template": "{{ tools | tojson }}"}]}))

# ---- Jinja ---------------------------------------------------------------------------------
seed("jinja", "zephyr", zephyr)
cases = json.loads(read("tests/data/templates/cases.json"))
n = 0
for case in (cases if isinstance(cases, list) else cases.get("cases", [])):
    src = case.get("template") if isinstance(case, dict) else None
    if isinstance(src, str) and n < 60:
        seed("jinja", "case-%02d" % n, src)
        n += 1
seed("jinja", "features", """{%- set ns = namespace(found=false, n=0) -%}
{%- macro show(m, sep=': ') -%}{{ m.role | upper }}{{ sep }}{{ m.content | trim }}{%- endmacro -%}
{%- for m in messages if m.role != 'tool' -%}
  {%- if loop.first and m.role == 'system' %}[SYS]{{ m.content }}{% elif m.role in ['user', 'assistant'] -%}
  {{ show(m) }}{% set ns.n = ns.n + 1 %}{% else %}{{ raise_exception('bad role') }}{%- endif -%}
  {%- if m.tool_calls is defined %}{% for c in m.tool_calls %}{{ c.function.arguments | tojson(indent=2) }}{% endfor %}{% endif %}
  {{- loop.index ~ '/' ~ loop.length }}{% if not loop.last %}{{ '\\n' }}{% endif %}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<|assistant|>' + (bos_token * 2) | replace('s', 'S') }}{% endif -%}
{{ messages | map(attribute='role') | join(',') }}{{ (tools | length) > 0 and enable_thinking is false }}
{{ range(3) | list | reverse | first }}{{ 'a,b'.split(',')[1:] }}{{ {'k': 1}.items() | list }}{{ 7 // 2 }}{{ 2 ** 3 }}{{ -1.5 | abs }}
{%- filter upper %}x{% endfilter %}{% raw %}{{ raw }}{% endraw %}{# comment #}""")

# ---- dataset records -----------------------------------------------------------------------
for name in ["sft.jsonl", "pref.jsonl", "golden-qwen3.jsonl"]:
    lines = read("tests/data/datasets/" + name).decode().splitlines()
    for i, line in enumerate(lines[:3]):
        seed("dataset", "%s-%d" % (name.split(".")[0], i), line + "\n")
seed("dataset", "schemas", "\n".join(json.dumps(r) for r in [
    {"text": "Hello world"},
    {"prompt": "Q?", "completion": " A."},
    {"input_ids": [3, 4, 5]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]},
    {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "A"}],
     "rejected": [{"role": "assistant", "content": "B"}]},
    {"prompt": "P", "chosen": " yes", "rejected": " no"},
    {"chosen": "P yes", "rejected": "P no"},
]) + "\n")
seed("dataset", "array", json.dumps([{"text": "a"}, {"prompt": "p", "completion": "c"}]))

# ---- training recipes (first byte: 0 sft, 1 dpo, 2 orpo) -----------------------------------
seed("train_recipe", "sft-zephyr", b"\x00" + read("recipes/sft-zephyr-lora.yaml"))
seed("train_recipe", "dpo-zephyr", b"\x01" + read("recipes/dpo-zephyr-lora.yaml"))
seed("train_recipe", "orpo", b"\x02method: orpo\nbeta: 0.1\nlearning_rate: 8.0e-6\nlr_scheduler_type: linear\n"
     b"max_length: 512\nmax_prompt_length: 256\nlora_r: 8\nlora_target_modules: all-linear\n")
seed("train_recipe", "sft-keys", b"\x00model: models/paft-tiny\ndata: d.jsonl\noutput_dir: out\nnum_train_epochs: 2\n"
     b"per_device_train_batch_size: 4\ngradient_accumulation_steps: 2\nl1_lambda: 1.0e-4\nwarmup_ratio: 0.1\n"
     b"seed: 42\nthreads: 2\nmax_steps: 10\nassistant_only_loss: false\npacking: true\n")

# ---- paft run recipes ----------------------------------------------------------------------
for name in ["paft-default.yaml", "paft-tiny.yaml", "paft-mistral-7b.yaml"]:
    seed("run_recipe", name.split(".")[0], read("recipes/" + name))

# ---- mergekit configs ----------------------------------------------------------------------
seed("merge_recipe", "ties", """models:
  - model: base+sft
    parameters:
      density: 0.5
      weight: [0.0, 0.5, 1.0]
  - model: base+dpo
    parameters:
      density: 0.7
      weight:
        - filter: self_attn
          value: 0.3
        - value: 0.5
merge_method: ties
base_model: base
parameters:
  normalize: true
  int8_mask: true
dtype: bfloat16
""")
seed("merge_recipe", "slerp", """slices:
merge_method: slerp
base_model: a
models:
  - model: a
  - model: b
parameters:
  t:
    - filter: mlp
      value: [0, 0.5, 0.3, 0.7, 1]
    - value: 0.5
dtype: float16
tokenizer_source: base
""")
seed("merge_recipe", "dare", "merge_method: dare_ties\nbase_model: m\nmodels:\n  - model: m+a\n    parameters: {weight: 1, density: 0.53}\n"
                             "  - model: m+b\n    parameters: {weight: 0.5, density: 0.4}\nparameters: {lambda: 1.1, rescale: true}\nout_dtype: float32\n")
seed("merge_recipe", "linear", "merge_method: linear\nmodels:\n  - model: x\n    parameters:\n      weight: 1.0\n"
                               "  - model: y\n    parameters:\n      weight: 0.3\nparameters:\n  normalize: false\n")
seed("merge_recipe", "task-arithmetic", "merge_method: task_arithmetic\nbase_model: b\nmodels:\n  - model: b+x\n"
                                        "    parameters:\n      weight: 0.7\nparameters:\n  lambda: 1.0\n")

# ---- eval task YAML (next to docs.jsonl: question, choices, label, answer) ------------------
seed("task_yaml", "mc", """task: qa
dataset_path: docs.jsonl
output_type: multiple_choice
description: "Answer.\\n\\n"
doc_to_text: "Q: {{question}}\\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: label
num_fewshot: 2
fewshot_config:
  sampler: first_n
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 2
""")
seed("task_yaml", "gen", """task: qa_gen
dataset_path: docs.jsonl
test_split: test
output_type: generate_until
doc_to_text: "Problem: {{question}}\\nSolution:"
doc_to_target: "{{answer.split('#### ')[-1]}}"
target_delimiter: " "
fewshot_delimiter: "\\n\\n"
num_fewshot: 1
generation_kwargs:
  until: ["\\n\\n", "Problem:"]
  max_gen_toks: 64
  do_sample: false
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "(\\\\-?[0-9\\\\.\\\\,]+)"
        group_select: 0
        fallback: "[none]"
      - function: take_first
""")
seed("task_yaml", "choice-list", "task: t\ndataset_path: docs.jsonl\ndoc_to_text: question\ndoc_to_choice: ['3', '4', 'blue']\n"
                                 "doc_to_target: 1\n")
print("seeds written under", OUT)
