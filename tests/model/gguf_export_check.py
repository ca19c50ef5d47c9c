"""External check of gllm's GGUF export, run by tests/model/test_model_gguf_export.c:

  gguf_export_check.py GCONVERT SOURCE_DIR TMP_DIR

For the tiny HF fixtures qwen2, mistral and llama2 (tests/fixtures/<arch>), and a
tiny random GPT-2 made here (see gpt2_folder): put config.json and
model.safetensors into TMP_DIR/<arch> with a small
tokenizer of the fixture's vocabulary size written here (byte-level BPE with
GPT-2's split for gpt2, with Qwen2's split for qwen2, SentencePiece-style BPE
with byte fallback and Metaspace for mistral and llama2, its merges derived
from scores as a SentencePiece vocabulary's are) and a chat template; export
it with gllm's gconvert (F32, and F16 for qwen2); then read the file with

  - the `gguf` package (GGUFReader): architecture, tensor count and shapes,
    tokenizer.ggml.model and its arrays (scores and types for "llama", merges
    for "gpt2"), the chat template;
  - transformers' GGUF loader (AutoModelForCausalLM / AutoTokenizer
    .from_pretrained(dir, gguf_file=...)): logits on a random [2, 16] batch
    against transformers on the HF folder the file was made from, and the
    tokenizer's ids against the `tokenizers` package on its tokenizer.json.

Mistral: gllm writes it as llama.cpp does (architecture "llama", the sliding
window under llama.attention.sliding_window); transformers' GGUF loader makes a
MistralForCausalLM of it (from general.name) but does not read the window, so
only the first `sliding_window` positions, which the window cannot affect, are
compared.

Prints one line per file: "check NAME rel_err E tok_equal 0|1 gguf_ok 0|1
positions T". Exits 77 when numpy, torch, transformers, gguf, tokenizers or
safetensors is missing.
"""
import json
import math
import os
import shutil
import subprocess
import sys

try:
    import gguf
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.tokenization_utils_base import generate_merges
except ImportError:
    sys.exit(77)

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEXTS = ["the cat sat on the mat", "Hello, world! 123", "  two  spaces\nand a line", "a"]
TEMPLATE = ("{% for m in messages %}{{ bos_token + m['role'] + ': ' + m['content'] + eos_token }}"
            "{% endfor %}")
SPACE = "\u2581"


def added(i, content):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def byte_level_tokenizer(V, split):
    alphabet = bytes_to_unicode()
    vocab = {alphabet[b]: len([c for c in range(32, b)]) for b in range(32, 127)}
    merges = []
    for a, b in [("t", "h"), ("th", "e"), ("\u0120", "t"), ("\u0120t", "he"), ("a", "t"), ("\u0120", "c"),
                 ("\u0120c", "at"), ("o", "n"), ("\u0120", "s"), ("\u0120s", "at"), ("\u0120", "m"),
                 ("\u0120m", "at"), ("e", "l"), ("el", "l"), ("l", "o"), ("\u0120", "on")]:
        if len(vocab) == V - 1:
            break
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append([a, b])
    assert len(vocab) == V - 1, (len(vocab), V)
    eot = "<|endoftext|>"
    pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if split:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
            dict(pre, use_regex=False)]}
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [added(V - 1, eot)],
          "normalizer": None, "pre_tokenizer": pre, "post_processor": None,
          "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                    "ignore_merges": False, "vocab": vocab, "merges": merges}}
    return tj, {"bos_token": eot, "eos_token": eot, "chat_template": TEMPLATE}


def spm_tokenizer(V):
    pieces = ["<unk>", "<s>", "</s>", SPACE] + list("abcdefghijklmnopqrstuvwxyz") + \
        list("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + list("0123456789.,!?'\n")
    for t in ["th", SPACE + "t", "he", SPACE + "the", "at", SPACE + "c", SPACE + "cat", SPACE + "s",
              SPACE + "sat", "on", SPACE + "on", SPACE + "m", SPACE + "mat", "el", "ll", "ello",
              SPACE + "H", SPACE + "Hello", "or", SPACE + "w", "ld", SPACE + "a", "in", "an", "er",
              "es", "re", "en", "ing", SPACE + "tw", SPACE + "two", "ac", "es", SPACE + "sp", "ce",
              "ne", SPACE + "an", SPACE + "and", SPACE + "l", "li", "ine", SPACE + "line", "nd",
              SPACE + "i", "is", SPACE + "is", "it", "ou", "ar", "al", "le", "ed", "st", "to", "ti"]:
        if len(pieces) == V:
            break
        if t not in pieces:
            pieces.append(t)
    assert len(pieces) == V, (len(pieces), V)
    vocab = {p: i for i, p in enumerate(pieces)}
    scores = {p: (0.0 if i < 4 else -float(i)) for i, p in enumerate(pieces)}
    merges = [list(m) for m in generate_merges(vocab, scores)]
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
          "normalizer": None,
          "pre_tokenizer": {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False},
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
          "decoder": {"type": "Sequence", "decoders": [
              {"type": "Replace", "pattern": {"String": SPACE}, "content": " "}, {"type": "ByteFallback"},
              {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                    "ignore_merges": False, "vocab": vocab, "merges": merges}}
    return tj, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": TEMPLATE}


def field(reader, key):
    f = reader.get_field(key)
    return None if f is None else f.contents()


def gpt2_folder(d):
    """transformers' GGUF loader maps gpt2.context_length to n_ctx and ignores
    feed_forward_length, so it builds GPT-2s with n_positions 1024 and
    n_inner 4 * n_embd only; the gpt2 fixture has 64 and 104. A tiny random
    GPT-2 of the shape it can build stands in (seeded)."""
    torch.manual_seed(2)
    m = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_embd=40, n_layer=2, n_head=5, n_positions=1024,
                                      bos_token_id=100, eos_token_id=100))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))
    m.save_pretrained(d)


def check(gconvert, src, tmp, arch, gtype, tol):
    fx = os.path.join(src, "tests", "fixtures", arch)
    d = os.path.join(tmp, arch)
    os.makedirs(d, exist_ok=True)
    if arch == "gpt2":
        gpt2_folder(d)
    else:
        for name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(fx, name), d)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    V = cfg["vocab_size"]
    spm = arch in ("mistral", "llama2")
    tj, tc = spm_tokenizer(V) if spm else byte_level_tokenizer(V, QWEN2_SPLIT if arch == "qwen2" else None)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False)
    name = f"{arch}-{gtype}"
    out = os.path.join(tmp, name + ".gguf")
    subprocess.run([gconvert, d, out, "--type", gtype, "--name", f"{arch} fixture"], check=True,
                   stdout=subprocess.DEVNULL)

    # the gguf package
    r = gguf.GGUFReader(out)
    want_arch = "llama" if spm else arch
    n_params = len(load_file(os.path.join(d, "model.safetensors")))
    tensors = {t.name: t for t in r.tensors}
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    ok = (field(r, "general.architecture") == want_arch and len(tensors) == n_params
          and tensors["token_embd.weight"].shape.tolist() == [cfg.get("hidden_size", cfg.get("n_embd")), V]
          and len(tokens) == V and len(types) == V and field(r, "tokenizer.chat_template") == TEMPLATE)
    if spm:
        scores = field(r, "tokenizer.ggml.scores")
        ok = ok and field(r, "tokenizer.ggml.model") == "llama" and len(scores) == V and \
            types[:3] == [2, 3, 3] and field(r, "tokenizer.ggml.merges") is None and \
            field(r, "tokenizer.ggml.add_space_prefix") is True and field(r, "tokenizer.ggml.add_bos_token") is True
    else:
        ok = ok and field(r, "tokenizer.ggml.model") == "gpt2" and \
            field(r, "tokenizer.ggml.pre") == ("qwen2" if arch == "qwen2" else "gpt-2") and \
            len(field(r, "tokenizer.ggml.merges")) == len(tj["model"]["merges"]) and types[V - 1] == 3

    # transformers' GGUF loader
    model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=name + ".gguf", dtype=torch.float32).eval()
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(5))
    T = cfg.get("sliding_window") or ids.shape[1]
    with torch.no_grad():
        got = model(input_ids=ids).logits.float().numpy()[:, :T]
        want = hf(input_ids=ids).logits.float().numpy()[:, :T]
    err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    tok = AutoTokenizer.from_pretrained(tmp, gguf_file=name + ".gguf")
    orig = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    tok_equal = all(tok.encode(t, add_special_tokens=False) == orig.encode(t, add_special_tokens=False).ids
                    for t in TEXTS)
    print(f"check {name} rel_err {err:.3e} tol {tol:g} tok_equal {int(tok_equal)} gguf_ok {int(ok)} "
          f"positions {T}", flush=True)


def main(gconvert, src, tmp):
    for arch, gtype, tol in [("gpt2", "f32", 1e-5), ("qwen2", "f32", 1e-5), ("qwen2", "f16", 1e-2),
                             ("mistral", "f32", 1e-5), ("llama2", "f32", 1e-5)]:
        check(gconvert, src, tmp, arch, gtype, tol)


if __name__ == "__main__":
    main(*sys.argv[1:4])
