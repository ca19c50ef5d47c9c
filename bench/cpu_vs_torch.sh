#!/usr/bin/env bash
# Forward+backward throughput, gllm's CPU backend vs PyTorch on the CPU, fp32,
# same model files, same batch shape, same thread count, in one run. Each pair
# is measured REPS times, alternating gllm and PyTorch, and the medians are
# compared (a shared VM's speed drifts between runs).
# usage: bench/cpu_vs_torch.sh [BUILD_DIR] [THREADS] [REPS] [--save]
#   --save also writes the table to bench/results/cpu_train_<date>.md
# Needs torch + transformers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-$(nproc)}
reps=${3:-3}
save=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=()
if [ -d "$here/../../shared/assets/models/stories260K-hf" ]; then
  models+=("stories260K:$here/../../shared/assets/models/stories260K-hf:8:256")
fi
for shape in llama-6m gpt2-14m; do
  python3 "$here/make_bench_model.py" "$work/$shape" "$shape" >&2
  models+=("$shape:$work/$shape:4:256")
done
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
torch_v=$(python3 -c "import torch; print(torch.__version__)")
out=$work/table.md
{
  echo "# CPU forward+backward, fp32, $threads threads"
  echo
  echo "$cpu; $date_utc; PyTorch $torch_v (sdpa attention); gllm $(git -C "$here/.." rev-parse --short HEAD)."
  echo "Median of $reps alternating runs per side (each run: median step of 10 after 2 warm-up steps);"
  echo "random token batches, loss on every token. Produced by bench/cpu_vs_torch.sh."
  echo
  echo "| model | params | B x T | gllm tok/s | PyTorch tok/s | gllm / PyTorch | ratio per run |"
  echo "|---|---|---|---|---|---|---|"
} > "$out"
for entry in "${models[@]}"; do
  IFS=: read -r name dir B T <<<"$entry"
  runs=$work/$name.jsonl
  : > "$runs"
  for ((r = 0; r < reps; r++)); do
    OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
      "$build/bench_train_cpu" "$dir" "$B" "$T" "$threads" 10 2 >> "$runs"
    python3 "$here/torch_cpu_fwdbwd.py" --model "$dir" --batch "$B" --seq "$T" \
      --threads "$threads" --steps 10 --warmup 2 2>/dev/null >> "$runs"
  done
  python3 - "$name" "$B" "$T" "$runs" >> "$out" <<'PY'
import json, statistics, sys
name, B, T, path = sys.argv[1:5]
rows = [json.loads(l) for l in open(path)]
g = [r for r in rows if r["impl"] == "gllm-cpu"]
p = [r for r in rows if r["impl"] == "pytorch"]
gm = statistics.median(r["tokens_per_s"] for r in g)
pm = statistics.median(r["tokens_per_s"] for r in p)
per = ", ".join(f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}" for a, b in zip(g, p))
print(f"| {name} | {g[0]['params'] / 1e6:.2f}M | {B} x {T} | {gm:.0f} | {pm:.0f} | {gm / pm:.2f} | {per} |")
PY
done
cat "$out"
if [ "$save" = "--save" ]; then
  mkdir -p "$here/results"
  cp "$out" "$here/results/cpu_train_$(date -u +%Y-%m-%d).md"
fi
