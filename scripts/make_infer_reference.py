#!/usr/bin/env python3
"""Reference data for the inference engine tests (tests/infer): for every
fixture architecture in tests/fixtures and for stories260K (from ../shared),
transformers' greedy continuations (model.generate, do_sample=False, eos not
stopping) and the log_softmax logprobs of candidate continuations after a
prompt (scoring mode).

Writes tests/fixtures/infer/<name>.safetensors with, for k = 0, 1, ...:
  g<k>.prompt  int32 [L]      greedy prompt
  g<k>.ids     int32 [n_new]  transformers' generated ids
  g<k>.margin  float32 [n_new] top-1 minus top-2 logit at each step (for the record)
  s<k>.prompt  int32 [L]      scoring prompt
  s<k>.cand<j> int32 [len]    candidate j
  s<k>.lp<j>   float32 [len]  log_softmax logprob of each candidate token

Usage: python3 scripts/make_infer_reference.py   (one CPU thread, fixed seeds; ~10 s)
"""
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "infer")
SHARED = os.path.join(ROOT, "..", "shared", "assets", "models", "stories260K-hf")
ARCHS = ["gpt2", "llama2", "llama3", "qwen2", "mistral", "smollm"]


def greedy(model, prompt, n_new):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=n_new, min_new_tokens=0, eos_token_id=None,
                         pad_token_id=0, output_scores=True, return_dict_in_generate=True,
                         temperature=None, top_p=None, top_k=None)
    gen = out.sequences[0, len(prompt):].tolist()
    if len(gen) != n_new:
        sys.exit(f"generate stopped early ({len(gen)} of {n_new}): eos still stops it")
    margins = []
    for s in out.scores:
        top2 = torch.topk(s[0].float(), 2).values
        margins.append(float(top2[0] - top2[1]))
    return gen, margins


def score(model, prompt, cand):
    ids = torch.tensor([prompt + cand])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    n = len(prompt)
    return [float(lp[n - 1 + i, cand[i]]) for i in range(len(cand))]


def make(name, path, n_gen, gen_lens, n_new):
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    V = model.config.vocab_size
    rng = np.random.default_rng(sum(map(ord, name)))
    t = {}
    for k in range(n_gen):
        L = int(gen_lens[k % len(gen_lens)])
        prompt = rng.integers(1, V, size=L).tolist()
        gen, margins = greedy(model, prompt, n_new)
        t[f"g{k}.prompt"] = np.array(prompt, dtype=np.int32)
        t[f"g{k}.ids"] = np.array(gen, dtype=np.int32)
        t[f"g{k}.margin"] = np.array(margins, dtype=np.float32)
    for k in range(2):
        L = 5 + 13 * k
        prompt = rng.integers(1, V, size=L).tolist()
        t[f"s{k}.prompt"] = np.array(prompt, dtype=np.int32)
        for j, clen in enumerate([1, 3, 6]):
            cand = rng.integers(0, V, size=clen).tolist()
            t[f"s{k}.cand{j}"] = np.array(cand, dtype=np.int32)
            t[f"s{k}.lp{j}"] = np.array(score(model, prompt, cand), dtype=np.float32)
    os.makedirs(OUT, exist_ok=True)
    save_file(dict(sorted(t.items())), os.path.join(OUT, f"{name}.safetensors"))
    mins = min(float(t[f"g{k}.margin"].min()) for k in range(n_gen))
    print(f"{name}: {n_gen} greedy prompts x {n_new} tokens (smallest top-2 margin {mins:.2e}), "
          f"2 scoring prompts x 3 candidates")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for arch in ARCHS:
        make(arch, os.path.join(FIX, arch), 3, [1, 7, 21], 12)
    if os.path.isdir(SHARED):
        make("stories260K", SHARED, 3, [1, 9, 40], 40)
    else:
        print(f"skipping stories260K: {SHARED} not found")


if __name__ == "__main__":
    main()
