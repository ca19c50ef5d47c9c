#!/usr/bin/env python3
"""Render the chat-template fixtures with transformers.

For every template under tests/fixtures/chat/templates/*.jinja and the shared
Llama-3, Llama-3.1 and Qwen3 tokenizer_config.json templates, render each
fixture conversation with and without add_generation_prompt through
transformers' own renderer (render_jinja_template: its sandboxed Jinja
environment with trim_blocks, lstrip_blocks, raise_exception and tojson), and
write tests/fixtures/chat/expected.json, which tests/tok/test_chat.c must
reproduce byte for byte. A template that raises records the message instead.

usage: python3 scripts/make_chat_fixtures.py [--shared ../shared]
"""
import argparse
import json
import os

from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "chat")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ],
    [
        {"role": "user", "content": "  padded question \n"},
        {"role": "assistant", "content": "Line one.\nLine two with 'quotes' and \"double\" {{ braces }} {% tags %}"},
        {"role": "user", "content": "héllo 世界 🙂 — naïve\ttab"},
    ],
    [
        {"role": "system", "content": "Be helpful.\n\nAlways."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply one"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": " reply two "},
    ],
    [
        {"role": "user", "content": "Think first."},
        {"role": "assistant", "content": "<think>\nsome reasoning\n</think>\n\nThe answer."},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ],
    [],
]

SHARED = {
    "llama3": "assets/tokenizers/llama3/tokenizer_config.json",
    "llama3.1": "assets/tokenizers/llama3.1/tokenizer_config.json",
    "qwen3": "assets/tokenizers/qwen3/tokenizer_config.json",
}

# bos/eos strings each template is rendered with (those of its tokenizer)
TOKENS = {
    "qwen2_instruct": (None, "<|im_end|>"),
    "smollm2_instruct": ("<|im_start|>", "<|im_end|>"),
    "llama2_chat": ("<s>", "</s>"),
    "mistral_instruct": ("<s>", "</s>"),
    "chatml": (None, "<|im_end|>"),
    "plain": ("<s>", "</s>"),
    "features": ("<s>", "</s>"),
    "features_ws": (None, None),
}


def special(tok):
    return tok["content"] if isinstance(tok, dict) else tok


def render(template, msgs, gen, bos, eos):
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    try:
        out = render_jinja_template(conversations=[msgs], chat_template=template,
                                    add_generation_prompt=gen, **kwargs)
        rendered = out[0] if isinstance(out, tuple) else out
        if isinstance(rendered, list):
            rendered = rendered[0]
        return {"expected": rendered}
    except Exception as e:  # the template's raise_exception or a Jinja error
        # raise_exception() raises the base TemplateError; Jinja's own runtime
        # errors are subclasses whose wording the C side need not copy
        return {"error": str(e), "raised": type(e).__name__ == "TemplateError"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    templates = {}
    for name in sorted(os.listdir(os.path.join(FIX, "templates"))):
        if name.endswith(".jinja"):
            with open(os.path.join(FIX, "templates", name), encoding="utf-8") as f:
                key = name[:-len(".jinja")]
                templates[key] = (f.read(),) + TOKENS[key]
    for key, rel in SHARED.items():
        with open(os.path.join(args.shared, rel), encoding="utf-8") as f:
            cfg = json.load(f)
        templates[key] = (cfg["chat_template"], special(cfg.get("bos_token")), special(cfg.get("eos_token")))
    cases = []
    for key, (template, bos, eos) in templates.items():
        for ci, msgs in enumerate(CONVERSATIONS):
            for gen in (False, True):
                case = {"template": key, "conversation": ci, "add_generation_prompt": gen}
                case.update(render(template, msgs, gen, bos, eos))
                cases.append(case)
    doc = {"conversations": CONVERSATIONS, "tokens": {k: [v[1], v[2]] for k, v in templates.items()},
           "cases": cases}
    with open(os.path.join(FIX, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} raising")


if __name__ == "__main__":
    main()
