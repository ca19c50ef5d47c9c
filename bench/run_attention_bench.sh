#!/usr/bin/env bash
# Attention bench: gllm's kernels (bench_attention) against PyTorch's flash SDPA on
# the same GPU in the same run; prints a markdown table with the ratio and, with
# --save, writes it to bench/results/attention_<date>.md.
#   bench/run_attention_bench.sh [BUILD_DIR] [--save]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
save=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bench_attention" --json > "$tmp/gllm.jsonl"
python3 bench/attn_sdpa_baseline.py > "$tmp/sdpa.jsonl"
python3 - "$tmp/gllm.jsonl" "$tmp/sdpa.jsonl" "$save" <<'PY'
import datetime, json, subprocess, sys
def load(p):
    return {(r["model"], r["pass"]): r for r in map(json.loads, open(p)) if r}
g, t = load(sys.argv[1]), load(sys.argv[2])
if not g:
    sys.exit("bench_attention printed no rows (no GPU?)")
first = next(iter(g.values()))
drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
any_t = next(iter(t.values()), {})
lines = [f"# Attention: gllm vs PyTorch flash SDPA",
         f"device: {first['device']}; driver {drv}; torch {any_t.get('torch', '?')}; "
         f"date {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC",
         "causal, bf16, unpacked rows; TFLOP/s = 4*B*H*T^2*D/2 (fwd), x2.5 (bwd); "
         "median of 30 calls timed with CUDA events", "",
         "| model | B | T | Hq/Hkv | D | pass | gllm ms | gllm TFLOP/s | SDPA ms | SDPA TFLOP/s | SDPA GQA | gllm/SDPA speed |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for key, r in g.items():
    b = t.get(key)
    ratio = f"{b['ms'] / r['ms']:.2f}" if b else "n/a"
    lines.append(f"| {r['model']} | {r['B']} | {r['T']} | {r['Hq']}/{r['Hkv']} | {r['D']} | "
                 f"{r['pass']} | {r['ms']:.3f} | {r['tflops']:.1f} | "
                 f"{b['ms'] if b else 'n/a'} | {b['tflops'] if b else 'n/a'} | "
                 f"{b['gqa'] if b else 'n/a'} | {ratio} |")
text = "\n".join(lines) + "\n"
print(text)
if sys.argv[3] == "--save":
    path = f"bench/results/attention_{datetime.datetime.utcnow():%Y%m%d}.md"
    open(path, "w").write(text)
    print("wrote", path)
PY
