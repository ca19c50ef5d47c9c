#!/usr/bin/env python3
"""Write the reference ids that tests/tok/test_tok_parity.c compares against.

For every tokenizer in ../shared (see TOKENIZERS) and every entry of
tests/fixtures/tok/corpus.jsonl ({"text": ...} or {"hex": ...} for bytes that
are not valid UTF-8, which HF sees as bytes.decode("utf-8", "replace")), the
`tokenizers` package's output goes to tests/fixtures/tok/<name>.ids, one line
per entry:

    ids without specials | ids added before | ids added after | fnv(decode) | fnv(decode skip_special) | r

where "added before/after" is what add_special_tokens=True adds around the
first list, and fnv is the 64-bit FNV-1a hash (hex) of the UTF-8 of
Tokenizer.decode(ids with specials, skip_special_tokens=False/True), and r is
"1" when HF's decode of the ids without specials gives the text back ("0" when
the normalizer or a stripped leading space changes it).

Usage: python3 scripts/make_tok_fixtures.py [--shared ../shared]
"""
import argparse
import json
import os

from tokenizers import Tokenizer

TOKENIZERS = {
    "gpt2": "assets/tokenizers/gpt2",
    "llama3": "assets/tokenizers/llama3",
    "llama3.1": "assets/tokenizers/llama3.1",
    "mistral": "assets/tokenizers/mistral",
    "qwen3": "assets/tokenizers/qwen3",
    "stories260K": "assets/models/stories260K-hf",
}


# Pipeline variants that no shared tokenizer uses, built on a shared one by
# replacing components; checked on every VARIANT_STRIDE-th corpus entry. The C
# test reads their definitions back from variants.json.
VARIANT_STRIDE = 4
BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def split(pattern, behavior, invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}


VARIANTS = [
    ("gpt2-prefix-space", "gpt2", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                                     "trim_offsets": True, "use_regex": True}}),
    ("gpt2-removed", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("\\s+", "Removed"), BL]}}),
    ("gpt2-merged-prev", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("[,.!?]", "MergedWithPrevious"), BL]}}),
    ("gpt2-merged-next", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split(" ", "MergedWithNext", kind="String"), BL]}}),
    ("gpt2-contiguous", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("[0-9]", "Contiguous"), BL]}}),
    ("gpt2-invert", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("\\p{L}+", "Isolated", invert=True), BL]}}),
    ("spm-always-split", "stories260K", {"normalizer": None, "pre_tokenizer": {
        "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}}),
    ("spm-first", "stories260K", {"normalizer": None, "pre_tokenizer": {
        "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}}),
]


def load(path, replace=None):
    """The tokenizer at path. GPT-2's tokenizer.json in ../shared lists one merge
    ("ĠCla ude") whose result is missing from its vocab, which `tokenizers`
    refuses to load; such a merge can never apply, so it is dropped here, as
    gllm drops it when loading."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    j.update(replace or {})
    model = j["model"]
    vocab = model["vocab"]

    def pair(m):
        return m.split(" ", 1) if isinstance(m, str) else m
    model["merges"] = [m for m in model["merges"] if "".join(pair(m)) in vocab]
    return Tokenizer.from_str(json.dumps(j))


def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared"))
    args = ap.parse_args()
    fix = os.path.join(root, "tests", "fixtures", "tok")
    corpus = []
    with open(os.path.join(fix, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            corpus.append(e["text"] if "text" in e else bytes.fromhex(e["hex"]).decode("utf-8", "replace"))
    jobs = [(name, rel, None, 1) for name, rel in TOKENIZERS.items()]
    jobs += [(name, TOKENIZERS[base], repl, VARIANT_STRIDE) for name, base, repl in VARIANTS]
    with open(os.path.join(fix, "variants.json"), "w") as f:
        json.dump({"stride": VARIANT_STRIDE,
                   "variants": [{"name": n, "base": TOKENIZERS[b], "replace": r} for n, b, r in VARIANTS]},
                  f, indent=1)
    for name, rel, repl, stride in jobs:
        tok = load(os.path.join(args.shared, rel, "tokenizer.json"), repl)
        out = []
        for text in corpus[::stride]:
            plain = tok.encode(text, add_special_tokens=False).ids
            full = tok.encode(text, add_special_tokens=True).ids
            # find what the post-processor put around the plain ids
            pre = next(i for i in range(len(full) + 1) if full[i:i + len(plain)] == plain)
            before, after = full[:pre], full[pre + len(plain):]
            assert before + plain + after == full
            back = "1" if tok.decode(plain, skip_special_tokens=False) == text else "0"
            out.append("%s|%s|%s|%s|%s|%s" % (" ".join(map(str, plain)), " ".join(map(str, before)),
                                           " ".join(map(str, after)),
                                           fnv1a(tok.decode(full, skip_special_tokens=False)),
                                           fnv1a(tok.decode(full, skip_special_tokens=True)), back))
        with open(os.path.join(fix, name + ".ids"), "w") as f:
            f.write("\n".join(out) + "\n")
        print(name, sum(len(l) for l in out), "bytes")


if __name__ == "__main__":
    main()
