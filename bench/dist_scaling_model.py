#!/usr/bin/env python3
"""A model (not a measurement) of gtrain's data-parallel scaling on one NVLink node.

Compute per step: model FLOPs (gtrain's formula: 6 x matmul parameters + 6 x layers x T x
heads x head_dim per token) over the peak dense bf16 rate times an assumed MFU. Communication:
ring all-reduce of the fp32 gradients, 2 (N-1)/N x bytes over NCCL's bus bandwidth; with
buckets, everything but the last bucket (the embeddings, final only after embed_bwd) overlaps
backward, so only that bucket is exposed; ZeRO-1 adds the bf16 all-gather of the parameters
after the step, (N-1)/N x 2 x params, not overlapped in gtrain today.

Assumptions (change them on the command line): H100/H200 SXM, 989 TFLOP/s dense bf16; NCCL
all-reduce bus bandwidth 360 GB/s on NVLink 4 + NVSwitch (of 450 GB/s per direction);
GPT-2 124M at 16 x 1024 tokens per GPU per step and MFU 40%; a ~1B Llama (TinyLlama-1.1B
shape) at 8 x 2048 and MFU 50%. Overlap is taken as free: in practice NCCL kernels take SMs
and HBM bandwidth from compute, a few percent.
"""
import argparse


def shape(name, V, C, L, H, KV, I, T, B, tied, gated, mfu, pos=0):
    D = C // H
    layer = C * (H * D + 2 * KV * D) + H * D * C + (3 if gated else 2) * C * I
    matmul = L * layer + V * C  # the LM head is a matmul, tied or not
    params = L * layer + V * C + pos * C + (0 if tied else V * C) + L * 2 * C + C
    flops_tok = 6 * matmul + 6 * L * T * H * D
    return dict(name=name, params=params, flops_tok=flops_tok, tokens=B * T, mfu=mfu,
                last_bucket=V * C * 4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--busbw-gbs", type=float, default=360.0)
    a = ap.parse_args()
    peak, bw = a.peak_tflops * 1e12, a.busbw_gbs * 1e9
    models = [shape("GPT-2 124M", 50257, 768, 12, 12, 12, 3072, 1024, 16, True, False, 0.40, 1024),
              shape("~1B Llama (TinyLlama-1.1B shape)", 32000, 2048, 22, 32, 4, 5632, 2048, 8,
                    False, True, 0.50)]
    print(f"peak {a.peak_tflops:.0f} TFLOP/s bf16, NCCL bus bandwidth {a.busbw_gbs:.0f} GB/s\n")
    print("| model | N | compute ms/step | all-reduce ms (share) | flat: efficiency, speedup "
          "| bucketed: exposed ms, efficiency, speedup | ZeRO-1 bucketed: + gather ms, efficiency |")
    print("|---|---|---|---|---|---|---|")
    for m in models:
        t = m["flops_tok"] * m["tokens"] / (peak * m["mfu"])
        g = m["params"] * 4
        for n in (2, 4, 8):
            f = 2 * (n - 1) / n
            ar, exposed, gather = f * g / bw, f * m["last_bucket"] / bw, (n - 1) / n * m["params"] * 2 / bw
            e_flat, e_b, e_z = t / (t + ar), t / (t + exposed), t / (t + exposed + gather)
            print(f"| {m['name']} ({m['params'] / 1e6:.0f}M, {m['flops_tok'] / 1e9:.2f} GFLOP/token, "
                  f"MFU {m['mfu']:.0%}) | {n} | {t * 1e3:.1f} | {ar * 1e3:.1f} ({ar / t:.1%}) | "
                  f"{e_flat:.1%}, {n * e_flat:.2f}x | {exposed * 1e3:.2f}, {e_b:.1%}, {n * e_b:.2f}x | "
                  f"{gather * 1e3:.1f}, {e_z:.1%} |")


if __name__ == "__main__":
    main()
