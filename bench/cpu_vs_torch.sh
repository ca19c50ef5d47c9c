#!/usr/bin/env bash
# Forward+backward throughput, gllm's CPU backend vs PyTorch on the CPU, fp32,
# same model files, same batch shape, same thread count, in one run.
# usage: bench/cpu_vs_torch.sh [BUILD_DIR] [THREADS]   (needs torch + transformers)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
models=()
if [ -d "$here/../../shared/assets/models/stories260K-hf" ]; then
  models+=("stories260K:$here/../../shared/assets/models/stories260K-hf:8:256")
fi
for shape in llama-15m gpt2-20m; do
  python3 "$here/make_bench_model.py" "$work/$shape" "$shape" >&2
  models+=("$shape:$work/$shape:4:256")
done
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "# CPU forward+backward, fp32, $threads threads — $cpu — $date_utc"
echo
echo "| model | B x T | gllm tok/s | PyTorch tok/s | gllm / PyTorch |"
echo "|---|---|---|---|---|"
for entry in "${models[@]}"; do
  IFS=: read -r name dir B T <<<"$entry"
  g=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$build/bench_train_cpu" "$dir" "$B" "$T" "$threads" 10 2)
  p=$(python3 "$here/torch_cpu_fwdbwd.py" --model "$dir" --batch "$B" --seq "$T" --threads "$threads" --steps 10 --warmup 2)
  python3 - "$name" "$B" "$T" "$g" "$p" <<'PY'
import json, sys
name, B, T, g, p = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
print(f"| {name} | {B} x {T} | {g['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | {g['tokens_per_s']/p['tokens_per_s']:.2f} |")
PY
done
