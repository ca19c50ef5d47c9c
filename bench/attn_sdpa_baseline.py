#!/usr/bin/env python3
"""PyTorch side of the attention bench: torch.nn.functional.scaled_dot_product_attention
restricted to the flash backend (bf16, is_causal=True) at the shapes of
bench/bench_attention.c. GQA goes through enable_gqa where the flash backend accepts
it, else K and V are repeated per query head before the timed region (the "gqa" field
says which). Each call is timed between two CUDA events; the median of --iters calls
is reported. Prints one JSON object per line, like `bench_attention --json`."""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [
    ("gpt2-124m", 8, 1024, 12, 12, 64),
    ("llama-3.2-1b", 4, 2048, 32, 8, 64),
    ("llama-3.1-8b", 2, 4096, 32, 8, 128),
]


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
             for _ in range(iters)]
    for start, end in pairs:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in pairs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    for model, B, T, Hq, Hkv, D in SHAPES:
        q = (torch.rand(B, Hq, T, D, device=dev) * 2 - 1).bfloat16().requires_grad_()
        k = (torch.rand(B, Hkv, T, D, device=dev) * 2 - 1).bfloat16().requires_grad_()
        v = (torch.rand(B, Hkv, T, D, device=dev) * 2 - 1).bfloat16().requires_grad_()
        dout = (torch.rand(B, Hq, T, D, device=dev) * 2 - 1).bfloat16()
        gqa = "native" if Hq == Hkv else "enable_gqa"
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            try:
                kk, vv = k, v
                out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True,
                                                     enable_gqa=Hq != Hkv)
            except RuntimeError:
                gqa = "repeat_interleave"
                kk = k.detach().repeat_interleave(Hq // Hkv, dim=1).requires_grad_()
                vv = v.detach().repeat_interleave(Hq // Hkv, dim=1).requires_grad_()
                out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
            extra = {"enable_gqa": True} if gqa == "enable_gqa" else {}

            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, kk, vv, is_causal=True, **extra)

            def bwd():
                torch.autograd.grad(out, (q, kk, vv), dout, retain_graph=True)

            fwd_flops = 4.0 * B * Hq * T * T * D / 2
            for name, fn, mult in (("fwd", fwd, 1.0), ("bwd", bwd, 2.5)):
                ms = time_ms(fn, args.warmup, args.iters)
                print(json.dumps({"model": model, "B": B, "T": T, "Hq": Hq, "Hkv": Hkv, "D": D,
                                  "pass": name, "ms": round(ms, 5),
                                  "tflops": round(mult * fwd_flops / (ms * 1e-3) / 1e12, 2),
                                  "gqa": gqa, "torch": torch.__version__,
                                  "device": torch.cuda.get_device_name()}), flush=True)


if __name__ == "__main__":
    main()
