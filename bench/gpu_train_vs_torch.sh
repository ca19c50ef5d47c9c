#!/usr/bin/env bash
# Training-step throughput (forward + backward, no optimizer) of gllm's CUDA
# backend against PyTorch on the same GPU in the same run: the GPU counterpart of
# bench/cpu_vs_torch.sh. Same randomly initialised HF model folders for both (GPT-2
# 124M and SmolLM2-360M shapes, bench/make_bench_model.py), same batch of random
# ids; PyTorch runs fp32 weights under bf16 autocast with SDPA attention (mixed
# precision, as gllm's CUDA backend computes in bf16 over fp32 master weights).
# Each side: median of 10 timed steps after 3 warm-up steps.
#
#   bench/gpu_train_vs_torch.sh BIN_DIR OUT.md     (BIN_DIR holds bench_train_cpu)
# Needs a GPU, torch and transformers. scripts/gpu_check.sh runs it from the bundle.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for spec in gpt2-124m:8:1024 smollm-360m:4:2048; do
  IFS=: read -r shape B T <<< "$spec"
  python3 "$here/make_bench_model.py" "$work/$shape" "$shape" >&2
  GLLM_BENCH_BACKEND=cuda "$bin/bench_train_cpu" "$work/$shape" "$B" "$T" 1 10 3 >> "$work/rows.jsonl"
  python3 "$here/torch_cpu_fwdbwd.py" --model "$work/$shape" --device cuda --batch "$B" \
    --seq "$T" --steps 10 --warmup 3 >> "$work/rows.jsonl"
  rm -rf "${work:?}/$shape"
done
python3 - "$work/rows.jsonl" "$out" <<'PY'
import datetime, json, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
g = [r for r in rows if r["impl"].startswith("gllm")]
t = [r for r in rows if r["impl"] == "pytorch"]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
lines = ["# Training step (forward + backward): gllm CUDA vs PyTorch",
         f"device: {gpu}; torch {t[0]['torch'] if t else '?'}; "
         f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
         "random-initialised HF models; PyTorch fp32 weights + bf16 autocast, SDPA; "
         "median of 10 steps after 3 warm-ups; ratio = gllm tokens/s / PyTorch tokens/s", "",
         "| model | params | B | T | gllm ms | gllm tokens/s | PyTorch ms | PyTorch tokens/s | ratio |",
         "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
for a, b in zip(g, t):
    name = b["model"]
    lines.append(f"| {name} | {a['params'] / 1e6:.0f}M | {a['B']} | {a['T']} | {a['ms_per_step']:.1f} | "
                 f"{a['tokens_per_s']:.0f} | {b['ms_per_step']:.1f} | {b['tokens_per_s']:.0f} | "
                 f"{a['tokens_per_s'] / b['tokens_per_s']:.2f} |")
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
