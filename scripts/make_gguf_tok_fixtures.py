#!/usr/bin/env python3
"""Reference ids for the tokenizer gllm builds from a GGUF file
(tests/tok/test_tok_gguf.c), on tests/fixtures/tok/corpus.jsonl, in the format
of scripts/make_tok_fixtures.py:

  smollm2-gguf-hf.ids  the `tokenizers` package on the tokenizer.json that
                       transformers' GGUF loader builds from
                       SmolLM2-135M-Instruct.Q4_1.gguf, unchanged;
  smollm2-gguf.ids     the same tokenizer.json with its pre_tokenizer set to
                       what tokenizer.ggml.pre = "smollm" means in llama.cpp
                       (digits split one by one, then GPT-2's split), which
                       transformers does not apply for that name.

Also writes tests/fixtures/gguf/smollm2_chat.json: chat conversations and the
string transformers' apply_chat_template renders for each with the GGUF's
template (add_generation_prompt true and false).

Usage: python3 scripts/make_gguf_tok_fixtures.py path/to/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import os
import sys
import tempfile

from tokenizers import Tokenizer
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tok_fixtures import fnv1a  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SMOLLM_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Name three colours."},
     {"role": "assistant", "content": "Red, green, blue."},
     {"role": "user", "content": "And two more?"}],
    [{"role": "user", "content": "Übersetze: \"good morning\" → Deutsch\n\nDanke!"}],
]


def write_ids(tok, corpus, path):
    out = []
    for text in corpus:
        plain = tok.encode(text, add_special_tokens=False).ids
        full = tok.encode(text, add_special_tokens=True).ids
        pre = next(i for i in range(len(full) + 1) if full[i:i + len(plain)] == plain)
        before, after = full[:pre], full[pre + len(plain):]
        back = "1" if tok.decode(plain, skip_special_tokens=False) == text else "0"
        out.append("%s|%s|%s|%s|%s|%s" % (" ".join(map(str, plain)), " ".join(map(str, before)),
                                       " ".join(map(str, after)),
                                       fnv1a(tok.decode(full, skip_special_tokens=False)),
                                       fnv1a(tok.decode(full, skip_special_tokens=True)), back))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main(gguf_path):
    d, name = os.path.split(os.path.abspath(gguf_path))
    hf = AutoTokenizer.from_pretrained(d, gguf_file=name)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
    fix = os.path.join(ROOT, "tests", "fixtures", "tok")
    corpus = []
    with open(os.path.join(fix, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            corpus.append(e["text"] if "text" in e else bytes.fromhex(e["hex"]).decode("utf-8", "replace"))
    write_ids(Tokenizer.from_str(json.dumps(j)), corpus, os.path.join(fix, "smollm2-gguf-hf.ids"))
    j["pre_tokenizer"] = SMOLLM_PRE
    write_ids(Tokenizer.from_str(json.dumps(j)), corpus, os.path.join(fix, "smollm2-gguf.ids"))
    chats = []
    for conv in CONVERSATIONS:
        for gen in (False, True):
            chats.append({"messages": conv, "add_generation_prompt": gen,
                          "text": hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)})
    with open(os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_chat.json"), "w", encoding="utf-8") as f:
        json.dump(chats, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
