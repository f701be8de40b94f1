#!/usr/bin/env python3
"""Reference for paft's evaluator (src/eval): lm-evaluation-harness's task semantics at commit
b281b09 (what the Open LLM Leaderboard v1 ran), written again in Python with Python's own
`random`, `str` methods, `re` and numpy, over local JSON Lines copies of the datasets.

The model is a stand-in whose answers are a fixed formula of the request's bytes, written the
same way in the C++ test (tests/test-eval-tasks.cpp), so the requests the evaluator builds and
the metrics it computes can be compared exactly.

    harness_ref.py --data tests/data/eval --runs runs.json --out out.json

runs.json: [{"task": "arc_challenge" | "hendrycksTest-SUBJECT" | "mmlu" | "yaml:PATH",
             "num_fewshot": K, "limit": N or null}, ...]
out.json:  one entry per run: {"runs": [{"task": NAME, "requests": [[context, continuation], ...],
           "greedy": [[context, until, max_gen_toks], ...], "docs": [{metric: value}, ...],
           "results": {metric: value, metric_stderr: value or null}}, ...]}
For "mmlu" the entry holds every subject's run and the mean over subjects.
"""
import argparse
import ast
import itertools
import json
import math
import os
import random
import re

import numpy as np

# ---- the stand-in model -------------------------------------------------------------------------


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def standin_loglikelihood(context, continuation):
    h = fnv1a(context.encode("utf-8") + b"\x00" + continuation.encode("utf-8"))
    return -(h % 61) / 8.0 - 0.25 * len(continuation.encode("utf-8")), h % 4 == 0


NUMBERS = ["18", "1,234", "-3", "72", "5.5", "64"]


def standin_greedy(context, until):
    h = fnv1a(context.encode("utf-8"))
    n = NUMBERS[(h >> 8) % 6]
    forms = [
        " She has 2 apples.\n#### " + n,
        " The total is " + n + ".\n#### " + n,
        " Step: compute " + n + "\n#### " + n,
        " #### " + n + "\n\nQuestion: what next?",
        " I do not know.",
    ]
    s = forms[h % 5]
    for term in until:  # the harness's greedy_until cuts at each stop string in turn
        s = s.split(term)[0]
    return s


# ---- data ---------------------------------------------------------------------------------------


def read_split(folder, split):
    for ext in (".jsonl", ".json"):
        path = os.path.join(folder, split + ext)
        if os.path.isfile(path):
            return read_file(path)
    raise FileNotFoundError(os.path.join(folder, split))


def read_file(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---- tasks --------------------------------------------------------------------------------------


class Task:
    """lm_eval.base.Task: fewshot_context as the harness had it."""

    def __init__(self):
        self._training_docs = None
        self._fewshot_docs = None

    def has_training_docs(self):
        return False

    def fewshot_examples(self, k, rnd):
        if self._training_docs is None:
            self._training_docs = list(self.training_docs())
        return rnd.sample(self._training_docs, k)

    def description(self, doc):
        return ""

    def fewshot_context(self, doc, num_fewshot, rnd):
        description = self.description(doc)
        description = description + "\n\n" if description else ""
        if num_fewshot == 0:
            labeled = ""
        else:
            if self.has_training_docs():
                shots = self.fewshot_examples(num_fewshot, rnd)
            else:
                if self._fewshot_docs is None:
                    self._fewshot_docs = list(self.validation_docs() if self.has_validation_docs() else self.test_docs())
                shots = rnd.sample(self._fewshot_docs, num_fewshot + 1)
                shots = [x for x in shots if x != doc][:num_fewshot]
            labeled = "\n\n".join(self.doc_to_text(d) + self.doc_to_target(d) for d in shots) + "\n\n"
        return description + labeled + self.doc_to_text(doc)


class MultipleChoice(Task):
    def doc_to_text(self, doc):
        return doc["query"]

    def doc_to_target(self, doc):
        return " " + doc["choices"][doc["gold"]]

    def construct_requests(self, doc, ctx):
        return [("ll", ctx, " {}".format(c)) for c in doc["choices"]]

    def process_results(self, doc, results):
        lls = np.array([r[0] for r in results])
        lengths = np.array([float(len(c)) for c in doc["choices"]])
        return {"acc": 1.0 if np.argmax(lls) == doc["gold"] else 0.0,
                "acc_norm": 1.0 if np.argmax(lls / lengths) == doc["gold"] else 0.0}


class Arc(MultipleChoice):
    VERSION = 0

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def has_training_docs(self):
        return True

    def has_validation_docs(self):
        return True

    def has_test_docs(self):
        return True

    def process(self, doc):
        key = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}.get(doc["answerKey"], doc["answerKey"])
        return {"query": "Question: " + doc["question"] + "\nAnswer:", "choices": doc["choices"]["text"],
                "gold": ["A", "B", "C", "D", "E"].index(key)}

    def training_docs(self):
        return [self.process(d) for d in read_split(self.folder, "train")]

    def test_docs(self):
        return [self.process(d) for d in read_split(self.folder, "test")]


class HellaSwag(MultipleChoice):
    VERSION = 0

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def has_training_docs(self):
        return True

    def has_validation_docs(self):
        return True

    def has_test_docs(self):
        return False

    @staticmethod
    def clean(text):
        text = text.strip()
        text = text.replace(" [title]", ". ")
        text = re.sub("\\[.*?\\]", "", text)
        return text.replace("  ", " ")

    def process(self, doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {"query": self.clean(doc["activity_label"] + ": " + ctx),
                "choices": [self.clean(e) for e in doc["endings"]], "gold": int(doc["label"])}

    def training_docs(self):
        return [self.process(d) for d in read_split(self.folder, "train")]

    def validation_docs(self):
        return [self.process(d) for d in read_split(self.folder, "validation")]


class Mmlu(MultipleChoice):
    """hendrycks_test.py, VERSION 1. It has no training split, so the base class's
    fewshot_context samples the validation split; the class's own fewshot_examples (first k of
    dev) is not reached at b281b09."""
    VERSION = 1

    def __init__(self, folder, subject):
        super().__init__()
        self.folder = folder
        self.subject = subject

    def has_training_docs(self):
        return False

    def has_validation_docs(self):
        return True

    def has_test_docs(self):
        return True

    def description(self, doc):
        return "The following are multiple choice questions (with answers) about " + " ".join(self.subject.split("_")) + "."

    def process(self, doc):
        keys = ["A", "B", "C", "D"]
        choices = "".join(f"{k}. {c}\n" for k, c in zip(keys, doc["choices"]))
        return {"query": f"{doc['question'].strip()}\n{choices}Answer:", "choices": keys, "gold": doc["answer"]}

    def docs(self, split):
        return [self.process(d) for d in read_split(self.folder, split) if d["subject"] == self.subject]

    def validation_docs(self):
        return self.docs("validation")

    def test_docs(self):
        return self.docs("test")


QA_PROMPT = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


class TruthfulQaMc(Task):
    VERSION = 1

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def has_validation_docs(self):
        return True

    def has_test_docs(self):
        return False

    def validation_docs(self):
        return read_split(self.folder, "validation")

    def doc_to_text(self, doc):
        return QA_PROMPT + "\n\nQ: " + doc["question"] + "\nA:"

    def doc_to_target(self, doc):
        return " "

    def fewshot_context(self, doc, num_fewshot, rnd):
        assert num_fewshot == 0
        return super().fewshot_context(doc, num_fewshot, rnd)

    def construct_requests(self, doc, ctx):
        return [("ll", ctx, " " + t) for t in doc["mc1_targets"]["choices"] + doc["mc2_targets"]["choices"]]

    def process_results(self, doc, results):
        lls = [r[0] for r in results]
        split = len(doc["mc1_targets"]["choices"])
        mc1, mc2 = lls[:split], lls[split:]
        true_count = list(doc["mc2_targets"]["labels"]).index(0)
        p_true, p_false = np.exp(np.array(mc2[:true_count])), np.exp(np.array(mc2[true_count:]))
        return {"mc1": np.argmax(mc1) == 0, "mc2": sum(p_true / (sum(p_true) + sum(p_false)))}


class Winogrande(Task):
    VERSION = 0

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def has_training_docs(self):
        return True

    def has_validation_docs(self):
        return True

    def has_test_docs(self):
        return False

    def training_docs(self):
        return read_split(self.folder, "train")

    def validation_docs(self):
        return read_split(self.folder, "validation")

    @staticmethod
    def partial_context(doc, option):
        return doc["sentence"][:doc["sentence"].index("_")] + option

    @staticmethod
    def partial_target(doc):
        return " " + doc["sentence"][doc["sentence"].index("_") + 1:].strip()

    def doc_to_text(self, doc):
        return self.partial_context(doc, doc["option" + doc["answer"]])

    def doc_to_target(self, doc):
        return self.partial_target(doc)

    def construct_requests(self, doc, ctx):
        out = []
        for option in [doc["option1"], doc["option2"]]:
            pieces = ctx.split("\n\n")
            pieces.pop()
            partial = self.partial_context(doc, option)
            full = "\n\n".join([*pieces, partial]) if pieces else partial
            out.append(("ll", full, self.partial_target(doc)))
        return out

    def process_results(self, doc, results):
        return {"acc": np.argmax([r[0] for r in results]) == {"1": 0, "2": 1}[doc["answer"]]}


ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


def gsm8k_extract(text):
    m = ANS_RE.search(text)
    return m.group(1).strip().replace(",", "") if m else "[invalid]"


class Gsm8k(Task):
    VERSION = 0

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def has_training_docs(self):
        return True

    def has_validation_docs(self):
        return False

    def has_test_docs(self):
        return True

    def training_docs(self):
        return read_split(self.folder, "train")

    def test_docs(self):
        return read_split(self.folder, "test")

    def doc_to_text(self, doc):
        return "Question: " + doc["question"] + "\nAnswer:"

    def doc_to_target(self, doc):
        return " " + doc["answer"]

    def construct_requests(self, doc, ctx):
        return [("gen", ctx, [":", "Question:", "Question"], 256)]

    def process_results(self, doc, results):
        gold = gsm8k_extract(doc["answer"])
        assert gold != "[invalid]"
        return {"acc": gsm8k_extract(results[0]) == gold}


# ---- custom YAML tasks --------------------------------------------------------------------------


class Custom(Task):
    """A YAML task as paft reads one: lm-eval's templates (jinja2 with StrictUndefined and
    keep_trailing_newline, ast.literal_eval of a rendered doc_to_choice), the old harness's
    sampling: the training (or fewshot) split when there is one, else k + 1 from the evaluated
    split with the document dropped; `first_n` takes the first k (or k + 1, dropping the
    document) in order."""

    def __init__(self, path):
        import jinja2
        import yaml
        super().__init__()
        with open(path) as f:
            self.c = yaml.safe_load(f)
        self.env = jinja2.Environment(loader=jinja2.BaseLoader, undefined=jinja2.StrictUndefined,
                                      keep_trailing_newline=True)
        base = os.path.join(os.path.dirname(path), self.c["dataset_path"])
        c = self.c
        if os.path.isfile(base):
            self.eval_records = read_file(base)
            self.pool_records = self.eval_records
            self.exclude = True
        else:
            eval_split = c.get("test_split") or c.get("validation_split")
            self.eval_records = read_split(base, eval_split)
            if c.get("fewshot_split"):
                pool, self.exclude = c["fewshot_split"], c["fewshot_split"] == eval_split
            elif c.get("training_split"):
                pool, self.exclude = c["training_split"], False
            else:
                pool, self.exclude = c.get("validation_split") or c.get("test_split"), True
            self.pool_records = read_split(base, pool)
        self.first_n = c.get("fewshot_config", {}).get("sampler") == "first_n"
        self.generate = c.get("output_type", "generate_until") == "generate_until"
        self.target_delimiter = c.get("target_delimiter", " ")
        self.fewshot_delimiter = c.get("fewshot_delimiter", "\n\n")
        self.VERSION = c.get("metadata", {}).get("version", 0)

    def value(self, spec, record):
        if spec in record:
            return record[spec]
        return self.env.from_string(spec).render(**record)

    def process(self, record):
        c = self.c
        doc = {"record": record, "text": str(self.value(c["doc_to_text"], record))}
        doc["description"] = self.env.from_string(c["description"]).render(**record) if "description" in c else ""
        target = c["doc_to_target"] if isinstance(c["doc_to_target"], int) else self.value(c["doc_to_target"], record)
        if self.generate:
            doc["answer"] = str(target)
            doc["target"] = self.target_delimiter + doc["answer"]
            return doc
        choice_spec = c["doc_to_choice"]
        if isinstance(choice_spec, list):
            choices = choice_spec
        elif choice_spec in record:
            choices = record[choice_spec]
        else:
            choices = ast.literal_eval(self.env.from_string(choice_spec).render(**record))
        doc["choices"] = [str(x) for x in choices]
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        doc["gold"] = target if isinstance(target, int) else doc["choices"].index(target)
        doc["target"] = self.target_delimiter + (doc["choices"][target] if isinstance(target, int) else target)
        return doc

    def eval_docs(self):
        return [self.process(r) for r in self.eval_records]

    def fewshot_context(self, doc, k, rnd):
        pool = [self.process(r) for r in self.pool_records]
        if k == 0:
            shots = []
        elif self.first_n:
            shots = [x for x in pool[:k + 1] if x != doc][:k] if self.exclude else pool[:k]
        elif self.exclude:
            shots = [x for x in rnd.sample(pool, k + 1) if x != doc][:k]
        else:
            shots = rnd.sample(pool, k)
        examples = "".join(d["text"] + d["target"] + self.fewshot_delimiter for d in shots)
        return doc["description"] + examples + doc["text"]

    def construct_requests(self, doc, ctx):
        if self.generate:
            gk = self.c.get("generation_kwargs", {})
            until = gk.get("until", [self.fewshot_delimiter])
            until = [until] if isinstance(until, str) else until
            return [("gen", ctx, until, gk.get("max_gen_toks", 256))]
        return [("ll", ctx, self.target_delimiter + c) for c in doc["choices"]]

    def regex_filter(self, text):
        step = [s for s in self.c["filter_list"][0]["filter"] if s["function"] == "regex"][0]
        found = re.findall(step["regex_pattern"], text)
        if not found:
            return step.get("fallback", "[invalid]")
        m = found[step.get("group_select", 0)]
        if isinstance(m, tuple):
            m = [x for x in m if x]
            m = m[0] if m else step.get("fallback", "[invalid]")
        return m.strip()

    def process_results(self, doc, results):
        if self.generate:
            answer = self.regex_filter(results[0]) if "filter_list" in self.c else results[0]
            return {"exact_match": 1.0 if answer == doc["answer"] else 0.0}
        lls = np.array([r[0] for r in results])
        lengths = np.array([float(len(c)) for c in doc["choices"]])
        return {"acc": 1.0 if np.argmax(lls) == doc["gold"] else 0.0,
                "acc_norm": 1.0 if np.argmax(lls / lengths) == doc["gold"] else 0.0}


# ---- the evaluator ------------------------------------------------------------------------------


def mean(arr):
    return sum(arr) / len(arr)


def mean_stderr(arr):
    if len(arr) == 1:
        return None  # the harness's sample_stddev divides by len - 1
    mu = mean(arr)
    return math.sqrt(sum([(x - mu) ** 2 for x in arr]) / (len(arr) - 1)) / math.sqrt(len(arr))


def standin_greedy_request(context, until, max_gen_toks):
    return standin_greedy(context, until)


def evaluate(name, task, k, limit, lm_ll=standin_loglikelihood, lm_greedy=standin_greedy_request):
    """One task's run; lm_ll(context, continuation) -> (logprob, is_greedy) and
    lm_greedy(context, until, max_gen_toks) -> text answer the requests (the stand-in by default)."""
    if isinstance(task, Custom):
        docs = task.eval_docs()
    else:
        docs = list(task.test_docs() if task.has_test_docs() else task.validation_docs())
    rnd = random.Random()
    rnd.seed(42)
    rnd.shuffle(docs)
    out = {"task": name, "requests": [], "greedy": [], "docs": []}
    per_doc = []
    for doc in itertools.islice(docs, 0, limit):
        ctx = task.fewshot_context(doc, k, rnd)
        reqs = task.construct_requests(doc, ctx)
        per_doc.append((doc, reqs))
        for r in reqs:
            if r[0] == "ll":
                out["requests"].append([r[1], r[2]])
            else:
                out["greedy"].append([r[1], r[2], r[3]])
    values = {}
    for doc, reqs in per_doc:
        results = [lm_ll(r[1], r[2]) if r[0] == "ll" else lm_greedy(r[1], r[2], r[3]) for r in reqs]
        metrics = {m: float(v) for m, v in task.process_results(doc, results).items()}
        out["docs"].append(metrics)
        for m, v in metrics.items():
            values.setdefault(m, []).append(v)
    out["results"] = {}
    for m, vs in values.items():
        out["results"][m] = mean(vs)
        out["results"][m + "_stderr"] = mean_stderr(vs)
    return out


def make_task(name, data):
    if name in ("arc_challenge", "arc_easy"):
        return Arc(os.path.join(data, name))
    if name == "hellaswag":
        return HellaSwag(os.path.join(data, name))
    if name.startswith("hendrycksTest-"):
        return Mmlu(os.path.join(data, "mmlu"), name[len("hendrycksTest-"):])
    if name == "truthfulqa_mc":
        return TruthfulQaMc(os.path.join(data, name))
    if name == "winogrande":
        return Winogrande(os.path.join(data, name))
    if name == "gsm8k":
        return Gsm8k(os.path.join(data, name))
    if name.startswith("yaml:"):
        return Custom(name[len("yaml:"):])
    raise ValueError(name)


def run(spec, data, lm=()):
    """One entry of runs.json; `lm` = (lm_ll, lm_greedy) as evaluate() takes, or () for the stand-in."""
    k, limit = spec["num_fewshot"], spec.get("limit")
    if spec["task"] != "mmlu":
        return evaluate(spec["task"], make_task(spec["task"], data), k, limit, *lm)
    subjects = []
    for d in read_split(os.path.join(data, "mmlu"), "test"):
        if d["subject"] not in subjects:
            subjects.append(d["subject"])
    runs = [evaluate("hendrycksTest-" + s, make_task("hendrycksTest-" + s, data), k, limit, *lm) for s in subjects]
    aggregate = {}
    for m in ("acc", "acc_norm"):
        aggregate[m] = sum(r["results"][m] for r in runs) / len(runs)
        ses = [r["results"][m + "_stderr"] for r in runs]
        aggregate[m + "_stderr"] = None if None in ses else math.sqrt(sum(se * se for se in ses)) / len(runs)
    return {"task": "mmlu", "subjects": runs, "results": aggregate}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with open(a.runs) as f:
        specs = json.load(f)
    out = {"runs": [run(s, a.data) for s in specs]}
    with open(a.out, "w") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
