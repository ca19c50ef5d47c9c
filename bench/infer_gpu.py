#!/usr/bin/env python3
"""Batched inference on a GPU (issue 9's GPU figures): gllm's engine on the cuda backend
(bench_infer, GLLM_BENCH_BACKEND=cuda) against transformers `generate` on the same GPU, and
gllm's decode step at batch 1 against the HBM floor.

The model is SmolLM2-135M's shape with random weights (bench/make_bench_model.py smollm-135m:
the real model does not travel in the GPU bundle, and the weights' values do not change what a
step costs); the prompts are the CPU bench's 256 (bench/results/infer_prompts.txt, ids and
max_tokens per line: 128 chat instructions x 32 tokens, 128 classifications behind one 8-shot
prefix x 3 tokens), greedy, eos ignored. gllm computes in bf16 on the GPU, so transformers runs
in bf16 too, in left-padded batches of --hf-batch prompts of one kind.

Decode floor: at batch 1 a step must read every weight and the sequence's cached K and V once,
so no step is shorter than (weight bytes + KV bytes read) / bandwidth, with the bandwidth of a
device-to-device copy measured by torch in this run. The step time is (wall of 1 + N tokens -
wall of 1 token) / N from two bench_infer runs of one prompt.

  python3 bench/infer_gpu.py --bin BIN_DIR --out OUT.md [--device cuda] [--hf-batch 128]

Appends a markdown section to OUT.md and prints a one-line verdict. --device cpu runs the same
on the CPU backend and torch's CPU (--quick: 8 prompts, 8 decode tokens), to check the script
where no GPU is; its figures mean nothing for the GPU goals.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GOAL_SPEEDUP = 10.0   # issue 9: >= 10x transformers on the GPU
GOAL_FLOOR = 1.5      # issue 9: decode step at batch 1 <= 1.5x the HBM floor


def read_prompts(path, limit=None):
    out = []
    for line in open(path):
        v = [int(x) for x in line.split()]
        if v:
            out.append((v[1:], v[0], "instruction" if v[0] > 3 else "classification"))
    if limit:  # a few of each kind
        out = ([p for p in out if p[2] == "instruction"][:limit // 2] +
               [p for p in out if p[2] == "classification"][:limit - limit // 2])
    return out


def write_prompts(path, prompts):
    with open(path, "w") as f:
        for ids, n, _ in prompts:
            f.write(f"{n} " + " ".join(map(str, ids)) + "\n")


def bench_infer(args, model, pfile, work, tag, backend):
    out, ids = os.path.join(work, tag + ".json"), os.path.join(work, tag + ".ids")
    env = dict(os.environ)
    if backend != "cpu":
        env["GLLM_BENCH_BACKEND"] = backend
    cmd = [os.path.join(args.bin, "bench_infer"), model, pfile, out, "--ids", ids]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_infer ({tag}) failed: {p.stderr.strip()[-600:]}")
    r = json.load(open(out))
    r["ids"] = [list(map(int, l.split())) for l in open(ids)]
    return r


def copy_bandwidth(torch, device):
    """Bytes per second of a device-to-device copy (read + write), best of 5 x 10 copies."""
    n = (1 << 28) if device == "cuda" else (1 << 25)
    x = torch.ones(n, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    best = None
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            y.copy_(x)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return 2 * 4 * n * 10 / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder with bench_infer")
    ap.add_argument("--out", required=True, help="markdown file to append the section to")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--hf-batch", type=int, default=128)
    ap.add_argument("--prompts", default=os.path.join(HERE, "results", "infer_prompts.txt"))
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="8 prompts, 8 decode tokens (checks)")
    ap.add_argument("--check", action="store_true",
                    help="only check that the inputs are in place (the GPU bundle's dry run)")
    args = ap.parse_args()
    if args.check:
        prompts = read_prompts(args.prompts)
        exe = os.path.join(args.bin, "bench_infer")
        missing = [f for f in (exe, os.path.join(HERE, "make_bench_model.py"),
                               os.path.join(HERE, "infer_vs_transformers.py")) if not os.path.exists(f)]
        if missing or len(prompts) != 256 or not os.access(exe, os.X_OK):
            print(f"bench-infer inputs: {len(prompts)} prompts (want 256), missing {missing}")
            return 1
        print(f"SKIP: bench-infer has its {len(prompts)} prompts, bench_infer and the model "
              f"writer; no GPU to measure on")
        return 0
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        print(f"SKIP: {e}")
        return 77
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "tradeoff"))
    import sizes
    from infer_vs_transformers import run_hf

    if args.device == "cuda" and not torch.cuda.is_available():
        print("SKIP: torch sees no CUDA device")
        return 77
    prompts = read_prompts(args.prompts, 8 if args.quick else None)
    n_dec = 8 if args.quick else args.decode_tokens
    backend = "cuda" if args.device == "cuda" else "cpu"
    work = tempfile.mkdtemp(prefix="gllm_infer_gpu_")
    model = os.path.join(work, "smollm-135m")
    subprocess.run([sys.executable, os.path.join(HERE, "make_bench_model.py"), model,
                    "smollm-135m"], check=True, stdout=subprocess.DEVNULL)
    cfg = json.load(open(os.path.join(model, "config.json")))
    pfile = os.path.join(work, "prompts.txt")
    write_prompts(pfile, prompts)

    # gllm, the whole batch (a warm-up run first: the first CUDA launches load modules)
    bench_infer(args, model, pfile, work, "warm", backend)
    g = bench_infer(args, model, pfile, work, "gllm", backend)
    # transformers, bf16 on the GPU (fp32 on the CPU, as gllm's CPU backend)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(args.device).eval()

    class Pad:
        pad_token_id = 0

    run_hf(hf, Pad, prompts[:2], args.hf_batch, device=args.device)  # warm-up
    hf_wall, _, hf_ids = run_hf(hf, Pad, prompts, args.hf_batch, device=args.device)
    n_gen = sum(p[1] for p in prompts)
    same = sum(a == b for a, b in zip(g["ids"], hf_ids))
    del hf
    if args.device == "cuda":
        torch.cuda.empty_cache()

    # decode at batch 1: one instruction prompt, 1 token and 1 + n_dec tokens
    ids = prompts[0][0]
    p1, pn = os.path.join(work, "one_1.txt"), os.path.join(work, "one_n.txt")
    write_prompts(p1, [(ids, 1, "")])
    write_prompts(pn, [(ids, 1 + n_dec, "")])
    w1 = min(bench_infer(args, model, p1, work, "one_1_%d" % i, backend)["wall_s"] for i in range(3))
    wn = min(bench_infer(args, model, pn, work, "one_n_%d" % i, backend)["wall_s"] for i in range(3))
    step_s = (wn - w1) / n_dec
    L, KV = cfg["num_hidden_layers"], cfg["num_key_value_heads"]
    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    esz = 2 if args.device == "cuda" else 4  # gllm's compute dtype: bf16 on CUDA, fp32 on the CPU
    params = sizes.count_params(model)  # as stored: the tied head is the embedding
    w_bytes = params * esz
    kv_tok = 2 * L * KV * D * esz
    ctx = len(ids) + 1 + n_dec / 2  # the mean context of the timed steps
    bw = copy_bandwidth(torch, args.device)
    floor_s = (w_bytes + ctx * kv_tok) / bw
    speedup = hf_wall / g["wall_s"]

    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    lines = ["", "# Batched inference: gllm engine vs transformers generate",
             f"device: {dev}; torch {torch.__version__}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"SmolLM2-135M shape, random weights ({params / 1e6:.1f} M parameters); "
             f"{len(prompts)} prompts ({sum(len(p[0]) for p in prompts)} prompt tokens, "
             f"{n_gen} generated, greedy, eos ignored); transformers "
             f"{'bf16' if esz == 2 else 'fp32'}, left-padded batches of {args.hf_batch}", "",
             "| system | time to finish (s) | output tok/s | vs transformers | prompt tokens computed |",
             "|---|--:|--:|--:|--:|",
             f"| transformers generate | {hf_wall:.2f} | {n_gen / hf_wall:.0f} | 1.00x | "
             f"{sum(len(p[0]) for p in prompts)} (+ padding) |",
             f"| gllm (prefix sharing, batch invariant, blocks of {g.get('block_size', '?')}) | "
             f"{g['wall_s']:.2f} | {n_gen / g['wall_s']:.0f} | {speedup:.2f}x | "
             f"{g['prompt_tokens'] - g['cached_tokens']} |", "",
             f"- greedy ids equal for {same} of {len(prompts)} prompts (random weights, bf16 in "
             f"different kernels: near-ties flip)." if esz == 2 else
             f"- greedy ids equal for {same} of {len(prompts)} prompts.",
             f"- decode at batch 1 ({n_dec} steps after a {len(ids)}-token prompt): "
             f"{step_s * 1e3:.3f} ms a step; floor {floor_s * 1e3:.3f} ms = ({w_bytes / 1e6:.1f} MB "
             f"of weights + {ctx * kv_tok / 1e6:.2f} MB of K/V) / {bw / 1e9:.0f} GB/s (copy); "
             f"{step_s / floor_s:.2f}x the floor (goal <= {GOAL_FLOOR}x).",
             f"- goals (issue 9): >= {GOAL_SPEEDUP:.0f}x transformers: "
             f"{'met' if speedup >= GOAL_SPEEDUP else 'NOT met'} ({speedup:.2f}x); decode "
             f"<= {GOAL_FLOOR}x the floor: {'met' if step_s <= GOAL_FLOOR * floor_s else 'NOT met'}."]
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"bench-infer: gllm {g['wall_s']:.2f} s vs transformers {hf_wall:.2f} s ({speedup:.2f}x, "
          f"goal {GOAL_SPEEDUP:.0f}x); decode batch 1 {step_s * 1e3:.3f} ms vs floor "
          f"{floor_s * 1e3:.3f} ms ({step_s / floor_s:.2f}x, goal <= {GOAL_FLOOR}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
