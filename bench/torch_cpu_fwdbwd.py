#!/usr/bin/env python3
"""PyTorch CPU baseline for one training step without the optimizer:
forward, mean cross-entropy over every token, backward, in fp32.

Loads a Hugging Face model folder, feeds random ids, and prints one JSON line:
{"impl":"pytorch","model":...,"B":..,"T":..,"threads":..,"attn":..,
 "tokens_per_s":..,"ms_per_step":..,"torch":...}

ms_per_step is the median over --steps timed steps after --warmup untimed
ones; tokens_per_s is B*T over that median.

Attention defaults to "sdpa": on CPU it was faster than "eager" in every
paired run for stories260K (B=4, T=256, 1 thread: 157 vs 170-220 ms) and for a
random 6-layer 512-wide Llama (B=2, T=256, 2 threads, on a loaded machine),
so it is the fairer baseline; --attn eager is kept to check that again.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face model folder")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: fp32 weights under bf16 autocast (mixed precision, as gllm's "
                         "CUDA backend computes in bf16 with fp32 master weights)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for name in ("batch", "seq", "threads", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must be at least 0")
    return args


def step(model, ids, targets):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ids.is_cuda):
        logits = model(input_ids=ids, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
    loss.backward()
    return loss.item()  # waits for the device


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation=args.attn)
    # Dropout would make steps unequal work and is absent from the C side.
    model.eval()
    vocab = model.config.vocab_size
    max_pos = getattr(model.config, "max_position_embeddings", None) \
        or getattr(model.config, "n_positions", None)
    if max_pos is not None and args.seq > max_pos:
        print(f"--seq {args.seq} exceeds the model's {max_pos} positions",
              file=sys.stderr)
        return 2
    model.to(args.device)
    ids = torch.randint(0, vocab, (args.batch, args.seq), device=args.device)
    targets = torch.randint(0, vocab, (args.batch, args.seq), device=args.device)

    for _ in range(args.warmup):
        step(model, ids, targets)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(model, ids, targets)
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    print(json.dumps({
        "impl": "pytorch",
        "model": os.path.basename(os.path.normpath(args.model)),
        "B": args.batch, "T": args.seq, "threads": args.threads,
        "attn": args.attn, "device": args.device,
        "tokens_per_s": round(args.batch * args.seq / (ms / 1e3), 1),
        "ms_per_step": round(ms, 3),
        "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
