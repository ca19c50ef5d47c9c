#!/usr/bin/env python3
"""Reference outputs of transformers on the real SmolLM2-135M-Instruct GGUF
(from_pretrained(dir, gguf_file=..., torch_dtype=float32)), for
tests/model/test_model_gguf.c:

  prompt{k}.ids      I32 [T]   ids of three prompts (two through the chat template)
  prompt{k}.logits   F32 [T, C] logits at every position, at C fixed vocabulary
                     columns (the fixture stays small; the columns are random)
  cols               I32 [C]
  greedy{k}.prompt   I32 [T], greedy{k}.ids I32 [64]: 64 greedy tokens (argmax
                     at every step, no stop at EOS), for two prompts

Writes tests/fixtures/gguf/smollm2_reference.safetensors.
Usage: python3 scripts/make_smollm2_reference.py path/to/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
N_COLS = 1024


def main(path):
    d, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                tokenize=False, add_generation_prompt=True),
        "The three primary colours are",
        tok.apply_chat_template([{"role": "user", "content": "Write a haiku about the sea."}],
                                tokenize=False, add_generation_prompt=True),
    ]
    rng = np.random.default_rng(135)
    cols = np.sort(rng.choice(model.config.vocab_size, N_COLS, replace=False)).astype(np.int32)
    out = {"cols": cols}
    with torch.no_grad():
        for k, p in enumerate(prompts):
            ids = tok(p, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].numpy()
            out[f"prompt{k}.ids"] = np.array(ids, dtype=np.int32)
            out[f"prompt{k}.logits"] = np.ascontiguousarray(logits[:, cols], dtype=np.float32)
        for k in (0, 1):
            ids = tok(prompts[k], add_special_tokens=False)["input_ids"]
            seq = list(ids)
            for _ in range(64):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                seq.append(nxt)
            out[f"greedy{k}.prompt"] = np.array(ids, dtype=np.int32)
            out[f"greedy{k}.ids"] = np.array(seq[len(ids):], dtype=np.int32)
            print(f"greedy {k}:", repr(tok.decode(seq[len(ids):])))
    save_file(out, os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_reference.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
