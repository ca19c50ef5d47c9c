#!/usr/bin/env python3
"""SentencePiece (tokenizer.ggml.model = "llama") GGUF tokenizer fixtures for
tests/tok/test_tok_gguf.c, written with the `gguf` Python package, and the ids
the `tokenizers` package gives on tests/fixtures/tok/corpus.jsonl with the
tokenizer.json that transformers' GGUF loader builds from each file
(AutoTokenizer.from_pretrained(dir, gguf_file=...)). The .ids format is
scripts/make_tok_fixtures.py's.

tests/fixtures/gguf/spm_small.gguf (committed, 12 KB): stories260K's 512-piece
  SentencePiece vocabulary (../shared/assets/models/stories260K/tok512.bin:
  scores, pieces; 0 unknown, 1-2 control, 3-258 byte) plus five tokens appended
  to exercise the token types: control <|im_start|> and <|im_end|>,
  user-defined <think> and "▁Lily▁", unused [PAD516]; bos 1, eos 2, unk 0,
  pad 513 (<|im_end|>), add_bos true, add_eos false, no add_space_prefix key
  (llama.cpp's default: true), a ChatML chat template.
  -> tests/fixtures/tok/spm-small-gguf.ids
tests/fixtures/gguf/spm_small_noprefix.gguf: the same vocabulary with
  add_space_prefix false, add_bos false, add_eos true.
  -> tests/fixtures/tok/spm-small-noprefix-gguf.ids. transformers' GGUF loader
  ignores add_space_prefix (it always prepends "▁" to the first word and strips
  it when decoding); gllm follows the file, as llama.cpp does, so this
  reference is transformers' tokenizer.json with its Metaspace prepend_scheme
  set to "never" and the decoder's Strip removed.
Llama 2's 32000-piece vocabulary (../shared/assets/tokenizers/llama2/
  tokenizer.model, read by gguf.vocab.SentencePieceVocab as llama.cpp's
  converter reads it) is not committed: the test builds the same GGUF itself
  from tokenizer.model (and skips that part when ../shared is absent); this
  script writes it to a temporary folder for transformers.
  -> tests/fixtures/tok/llama2-spm-gguf.ids

Re-runnable: the same inputs and package versions write the same bytes.
Usage: python3 scripts/make_gguf_spm_fixtures.py [--shared ../shared]
"""
import argparse
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import gguf
from gguf.vocab import SentencePieceVocab
from tokenizers import Tokenizer
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_tok_fixtures import write_ids  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
EXTRA = [("<|im_start|>", 3), ("<|im_end|>", 3), ("<think>", 4), ("\u2581Lily\u2581", 4),
         ("[PAD516]", 5)]


def read_tok512(path):
    """llama2.c's tokenizer.bin: int32 max length, then per token f32 score,
    int32 length, bytes; "▁" is stored as a space, ids 1/2 as "\\n<s>\\n"."""
    with open(path, "rb") as f:
        data = f.read()
    off, toks, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        toks.append(data[off:off + n].decode("utf-8"))
        scores.append(score)
        off += n
    toks[0:3] = ["<unk>", "<s>", "</s>"]
    toks = [t.replace(" ", "\u2581") for t in toks]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(toks) - 259)
    return toks, scores, types


def write_gguf(path, toks, scores, types, kv):
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    for key, value in kv.items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_string(key, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_json(gguf_path):
    d, name = os.path.split(os.path.abspath(gguf_path))
    hf = AutoTokenizer.from_pretrained(d, gguf_file=name)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            return json.load(f)


def corpus():
    out = []
    with open(os.path.join(FIX, "tok", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            out.append(e["text"] if "text" in e else bytes.fromhex(e["hex"]).decode("utf-8", "replace"))
    return out


def ids(j, path, texts):
    write_ids(Tokenizer.from_str(json.dumps(j)), texts, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    texts = corpus()
    toks, scores, types = read_tok512(os.path.join(args.shared, "assets/models/stories260K/tok512.bin"))
    toks += [t for t, _ in EXTRA]
    scores += [0.0] * len(EXTRA)
    types += [ty for _, ty in EXTRA]
    common = {"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
              "tokenizer.ggml.unknown_token_id": 0}
    small = os.path.join(FIX, "gguf", "spm_small.gguf")
    write_gguf(small, toks, scores, types, dict(common, **{
        "tokenizer.ggml.padding_token_id": 513, "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False, "tokenizer.chat_template": CHATML}))
    ids(hf_json(small), os.path.join(FIX, "tok", "spm-small-gguf.ids"), texts)
    noprefix = os.path.join(FIX, "gguf", "spm_small_noprefix.gguf")
    write_gguf(noprefix, toks, scores, types, dict(common, **{
        "tokenizer.ggml.add_bos_token": False, "tokenizer.ggml.add_eos_token": True,
        "tokenizer.ggml.add_space_prefix": False}))
    j = hf_json(noprefix)
    assert j["pre_tokenizer"]["type"] == "Metaspace" and j["pre_tokenizer"]["prepend_scheme"] == "first"
    j["pre_tokenizer"]["prepend_scheme"] = "never"
    j["decoder"]["decoders"] = [d for d in j["decoder"]["decoders"] if d["type"] != "Strip"]
    ids(j, os.path.join(FIX, "tok", "spm-small-noprefix-gguf.ids"), texts)

    vocab = SentencePieceVocab(Path(os.path.join(args.shared, "assets/tokenizers/llama2")))
    toks, scores, types = [], [], []
    for t, s, ty in vocab.all_tokens():
        toks.append(t.decode("utf-8"))
        scores.append(s)
        types.append(int(ty))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "llama2.gguf")
        write_gguf(path, toks, scores, types, dict(common, **{"tokenizer.ggml.add_bos_token": True}))
        ids(hf_json(path), os.path.join(FIX, "tok", "llama2-spm-gguf.ids"), texts)


if __name__ == "__main__":
    main()
