#!/usr/bin/env python3
"""Single-GPU fine-tuning throughput (issue 11's benchmark): gtrain against PyTorch on the same
GPU in the same run, whole training steps (forward, backward, clipping at norm 1, AdamW), with
peak memory and MFU.

Models: random weights at GPT-2 124M's and a 1B Llama's shapes (bench/tradeoff/sizes.py writes
them in fp32). gllm: gtrain --backend cuda (bf16 weights and activations, fp32 master weights,
gradients and AdamW state) on packed rows of random words; its tokens/s is the median step after
--warmup, its memory summary.json's peak_mem_mib_per_rank (every buffer of the backend), its
MFU its own (summary.json train_flops_per_token x tokens/s / peak_tflops). PyTorch: the
transformers model in fp32 under bf16 autocast, SDPA attention, fused AdamW, the same B x T of
random ids, clip_grad_norm_ 1; memory torch.cuda.max_memory_allocated (tensors only, without
the caching allocator's slack); MFU from the same FLOPs per token and peak rate.

  python3 bench/train_gpu_vs_torch.py --bin BIN_DIR --out OUT.md [--device cuda]

Appends a markdown section to OUT.md and prints a one-line verdict. --device cpu --quick runs a
tiny Llama on the CPU backend and torch's CPU to check the script where no GPU is; --check only
checks that its inputs are in place (the GPU bundle's dry run).
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tradeoff"))
GOAL_SPEEDUP = 1.5  # issue 11: >= 1.5x PyTorch tokens/s at no more peak memory
GOAL_MFU = 0.5      # issue 11: MFU >= 50% on the 1B model
CASES = {"cuda": [("gpt2-124m", 8, 1024), ("llama-1b", 4, 2048)],
         "cpu": [("tiny-llama", 2, 64)]}


def gllm_side(args, model, backend, B, T, work):
    import sizes
    d = os.path.join(work, "gtrain")
    cmd = [os.path.join(os.path.abspath(args.bin), "gtrain")] + sizes.gtrain_inputs(d, model, backend, B, T,
                                                                   args.steps)
    p = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"gtrain failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    step_s, toks, per_step, _, summ = sizes.gtrain_steps(d, args.warmup)
    shutil.rmtree(d, ignore_errors=True)
    return {"tokens_per_s": toks / step_s, "ms": step_s * 1e3, "tokens": toks,
            "peak_mib": max(summ["peak_mem_mib_per_rank"]), "mfu": summ.get("mfu"),
            "flops_per_token": summ["train_flops_per_token"],
            "peak_tflops": summ.get("peak_tflops"), "params": summ["parameters"]}


def torch_side(args, model, B, T):
    import torch
    from transformers import AutoModelForCausalLM
    dev = args.device
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32,
                                             attn_implementation="sdpa").to(dev)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5, fused=dev == "cuda")
    V = m.config.vocab_size
    g = torch.Generator().manual_seed(1234)
    times = []
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps):
        ids = torch.randint(0, V, (B, T), generator=g).to(dev)
        if dev == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None
    s = statistics.median(times)
    del m, opt
    if dev == "cuda":
        torch.cuda.empty_cache()
    return {"tokens_per_s": B * T / s, "ms": s * 1e3, "peak_mib": peak,
            "torch": torch.__version__}


def check(args):
    import sizes
    missing = [f for f in (os.path.join(args.bin, "gtrain"),) if not os.access(f, os.X_OK)]
    shapes = [c[0] for cs in CASES.values() for c in cs if c[0] not in sizes.SHAPES]
    if missing or shapes:
        print(f"bench-train-full inputs: missing {missing}, unknown shapes {shapes}")
        return 1
    print("SKIP: bench-train-full has gtrain and its shapes; no GPU to measure on")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder with gtrain")
    ap.add_argument("--out", required=True, help="markdown file to append the section to")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.check:
        return check(args)
    try:
        import torch
        import sizes
    except ImportError as e:
        print(f"SKIP: {e}")
        return 77
    if args.device == "cuda" and not torch.cuda.is_available():
        print("SKIP: torch sees no CUDA device")
        return 77
    rows = []
    for shape, B, T in CASES[args.device]:
        work = tempfile.mkdtemp(prefix="gllm_train_gpu_")
        model = os.path.join(work, shape)
        sizes.write_random_model(model, shape, "F32")
        g = gllm_side(args, model, args.device, B, T, work)
        t = torch_side(args, model, B, T)
        shutil.rmtree(work, ignore_errors=True)
        peak = g["peak_tflops"] * 1e12 if g["peak_tflops"] else None
        t["mfu"] = g["flops_per_token"] * t["tokens_per_s"] / peak if peak else None
        rows.append((shape, B, T, g, t))
        print(f"{shape}: gllm {g['tokens_per_s']:.0f} tok/s, PyTorch {t['tokens_per_s']:.0f} tok/s",
              flush=True)
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"

    def pct(x):
        return f"{100 * x:.1f}%" if x is not None else "-"

    def mib(x):
        return f"{x:.0f}" if x is not None else "-"

    lines = ["", "# Fine-tuning step (forward + backward + clip + AdamW): gtrain vs PyTorch",
             f"device: {dev}; torch {rows[0][4]['torch']}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; random-weight "
             f"models; gtrain {'bf16 with fp32 master weights and AdamW state' if args.device == 'cuda' else 'fp32 (the CPU backend)'}; PyTorch fp32 weights "
             f"under bf16 autocast, SDPA, fused AdamW; median of {args.steps - args.warmup} steps "
             f"after {args.warmup}; memory: gtrain's backend buffers, PyTorch's allocated tensors; "
             f"MFU from gtrain's FLOPs per token and the device's peak bf16 rate", "",
             "| model | params | B x T | gtrain tok/s | PyTorch tok/s | ratio | gtrain peak MiB "
             "| PyTorch peak MiB | gtrain MFU | PyTorch MFU |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for shape, B, T, g, t in rows:
        lines.append(f"| {shape} | {g['params'] / 1e6:.1f} M | {B} x {T} | "
                     f"{g['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} | "
                     f"{g['tokens_per_s'] / t['tokens_per_s']:.2f}x | {mib(g['peak_mib'])} | "
                     f"{mib(t['peak_mib'])} | {pct(g['mfu'])} | {pct(t['mfu'])} |")
    big = rows[-1]
    ratio = min(g["tokens_per_s"] / t["tokens_per_s"] for _, _, _, g, t in rows)
    mem_ok = all(t["peak_mib"] is not None and g["peak_mib"] <= t["peak_mib"]
                 for _, _, _, g, t in rows)
    mfu = big[3]["mfu"]
    lines += ["", f"- goals (issue 11): >= {GOAL_SPEEDUP}x PyTorch tokens/s at no more peak "
                  f"memory: {'met' if ratio >= GOAL_SPEEDUP and mem_ok else 'NOT met'} (lowest "
                  f"ratio {ratio:.2f}x; memory {'no more' if mem_ok else 'more or unknown'}); "
                  f"MFU >= {GOAL_MFU:.0%} on {big[0]}: "
                  f"{'met' if mfu is not None and mfu >= GOAL_MFU else 'NOT met'} ({pct(mfu)})."]
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"bench-train-full: lowest ratio {ratio:.2f}x (goal {GOAL_SPEEDUP}x), "
          f"MFU {pct(mfu)} on {big[0]} (goal {GOAL_MFU:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
