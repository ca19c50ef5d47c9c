#!/usr/bin/env bash
# Every CUDA verdict in one call, run on the GPU machine inside the bundle that
# scripts/gpu_bundle.sh made (.gpu/): no compiler, no network, no cmake needed.
#
#   bash .gpu/gpu_check.sh [OUT_DIR]        OUT_DIR defaults to $OUT, else .gpu/out
#   env: GLLM_CHECK_BUDGET  total seconds for all steps (default 500)
#        GLLM_CHECK_STEPS   comma list of step-name prefixes to run (default: all)
#        GLLM_TEST_SEED     the tests' seed (default: drawn now; printed either way)
#
# Steps, most important first, each under its own timeout inside the total
# budget: op tests against the CPU reference; GEMM correctness (small shapes,
# then training shapes up to 8192 in every layout, every path and tile, offset
# operands); attention; whole models against the CPU; one gtrain run and one
# ginfer batch end to end; compute-sanitizer memcheck / racecheck / synccheck on
# short cases; the benches (GEMM vs cuBLASLt, attention vs PyTorch SDPA, AdamW
# and memory-bound kernels vs copy bandwidth, a training step vs PyTorch, batched inference
# vs transformers and the decode step vs the HBM floor); then, with what
# is left of the budget, the size sweep of issue 12 (bench/tradeoff/sizes.py). A step's verdict is appended to
# summary.md the moment it ends, so a call cut short still returns what ran.
# Files in OUT_DIR (at most 8): summary.md, check.log (every step's output),
# sanitizer.log, bench_matmul.md, bench_attention.md, bench_kernels.md,
# bench_train.md (forward/backward and whole fine-tuning steps vs PyTorch, batched
# inference vs transformers),
# sizes.json (the size sweep of issue 12, rendered back here),
# tradeoff_gpu.tar.gz (the trade-off study of issue 12; with it sanitizer.log is
# folded into check.log to stay at 8).
# Back on the development machine, scripts/gpu_results.py turns them into
# bench/results/gpu_<date>.md.
#
# Without a GPU (CI's dry run) every step still runs its binary, which must load
# and skip cleanly; the verdicts then read "skipped". Exit status: 1 when a step
# failed or timed out, else 0.
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${1:-${OUT:-$B/out}}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd) || exit 1
cd "$B" || exit 1
summary="$OUT_DIR/summary.md"
log="$OUT_DIR/check.log"
sanlog="$OUT_DIR/sanitizer.log"
budget=${GLLM_CHECK_BUDGET:-500}
only=${GLLM_CHECK_STEPS:-}
start=$(date +%s)
deadline=$((start + budget))
seed=${GLLM_TEST_SEED:-$(( $(date +%s) * 2654435761 % 4294967291 + 1 ))}
export GLLM_TEST_SEED=$seed
export GLLM_FIXTURES="$B/fixtures"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: > "$log"
failures=0

# ---------------------------------------------------------------- environment
has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  has_gpu=1
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>/dev/null | head -1)
# CUDA's own libraries are not in the bundle: the image's, else the ones that
# PyTorch's wheels carry (only for gllm's binaries; python keeps its own paths).
GLLM_LD=${LD_LIBRARY_PATH:-}
if for b in bin/*; do ldd "$b" 2>/dev/null; done | grep -q 'not found'; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           $(python3 -c 'import glob, os, nvidia; print(" ".join(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib"))))' 2>/dev/null); do
    [ -d "$d" ] && GLLM_LD="$GLLM_LD${GLLM_LD:+:}$d"
  done
fi
export GLLM_LD
missing=$(for b in bin/*; do LD_LIBRARY_PATH="$GLLM_LD" ldd "$b" 2>/dev/null | grep 'not found'; done | sort -u | tr -s ' \t\n' ' ')

{
  echo "# gllm GPU check"
  echo
  echo "- device: ${gpu:-none found (dry run: every GPU step must skip cleanly)}"
  echo "- bundle: $(head -2 MANIFEST 2>/dev/null | tr '\n' ';' )"
  echo "- seed: $seed (replay: GLLM_TEST_SEED=$seed bash .gpu/gpu_check.sh)"
  echo "- budget: $budget s, started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  [ -n "$missing" ] && echo "- UNRESOLVED LIBRARIES: $missing"
  echo
  echo "| step | verdict | s | detail |"
  echo "|---|---|---|---|"
} > "$summary"
echo "seed $seed (replay with GLLM_TEST_SEED=$seed)"
cat "$summary"

# ---------------------------------------------------------------- the step runner
# step NAME TIMEOUT COMMAND: runs COMMAND (bash) under min(TIMEOUT, what is left of
# the budget), its output into check.log (and $work/NAME.out), and appends one
# verdict row. Exit 77 from a test is "skipped" (no GPU); the detail comes from the
# test's summary and FAIL lines.
row() { # name verdict seconds detail
  local d=${4//|/\\|}
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "${d:0:400}" | tee -a "$summary"
}
wanted() {
  [ -z "$only" ] && return 0
  local p
  for p in ${only//,/ }; do [[ $1 == "$p"* ]] && return 0; done
  return 1
}
step() { # NAME TIMEOUT COMMAND [skip_ok: exit 77 is acceptable on a GPU machine too]
  local name=$1 limit=$2 cmd=$3 skip_ok=${4:-}
  wanted "$name" || return 0
  local left=$((deadline - $(date +%s) - 5))
  if [ "$left" -lt 10 ]; then
    row "$name" "NOT RUN" 0 "total budget of $budget s spent"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local out="$work/$name.out" t0 rc
  t0=$(date +%s)
  echo "=== $name (timeout $limit s): $cmd" >> "$log"
  timeout -k 10 "$limit" bash -c "$cmd" > "$out" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  cat "$out" >> "$log"
  echo "=== $name: rc $rc after $dt s" >> "$log"
  local detail verdict
  detail=$(grep -E '^[0-9]+ checks, [0-9]+ failed' "$out" | tail -1)
  local fails
  fails=$(grep -E '^FAIL|FATAL|error|Error' "$out" | head -3 | tr '\n' ' ')
  case $rc in
    0)
      if [ "$has_gpu" = 0 ]; then
        verdict="skipped"; detail="no GPU: $(grep -m1 -iE 'skip|no CUDA|no GPU' "$out" | head -c 200)"
      else
        verdict="pass"; detail="${detail:-$(tail -1 "$out" | head -c 200)}"
      fi ;;
    77) verdict="skipped"; detail=$(grep -m1 '^SKIP' "$out" | head -c 300) ;;
    124|137) verdict="TIMED OUT"; detail="killed after $limit s; last: $(tail -2 "$out" | tr '\n' ' ' | head -c 200)"
             failures=$((failures + 1)) ;;
    *) verdict="FAIL (rc $rc)"; detail="$detail ${fails:-$(tail -3 "$out" | tr '\n' ' ')}"
       failures=$((failures + 1)) ;;
  esac
  if [ "$has_gpu" = 1 ] && [ "$rc" = 77 ] && [ -z "$skip_ok" ]; then
    verdict="FAIL (skipped on a GPU machine)"
    failures=$((failures + 1))
  fi
  row "$name" "$verdict" "$dt" "$detail"
  return 0
}
run() { echo "env LD_LIBRARY_PATH=\"\$GLLM_LD\" $*"; } # a gllm binary with CUDA's libraries found

# ---------------------------------------------------------------- 1. correctness
if [ -n "$missing" ]; then
  row libraries FAIL 0 "unresolved: $missing"
  failures=$((failures + 1))
fi
if [ "$has_gpu" = 1 ]; then
  step wgmma-built 30 "$(run bin/test_cuda_matmul --describe) | tee /dev/stderr | grep -q 'wgmma on'"
fi
step ops-harness 120 "$(run bin/test_backend_ops)"
step ops-cuda 150 "$(run bin/test_cuda_ops)"
step gemm-small 150 "$(run bin/test_cuda_matmul)"
step gemm-training-shapes 180 "$(run bin/test_cuda_matmul --large)"
step attention 150 "$(run bin/test_cuda_attention)"
step model-vs-cpu 150 "$(run bin/test_cuda_model)"
[ -x bin/test_backend_queue ] && step backend-queues 60 "$(run bin/test_backend_queue)"
[ -x bin/test_comm_nccl ] && step nccl-one-rank 90 "$(run bin/test_comm_nccl)"
# tests that read ../shared (test_cuda_train: stories260K) find the bundle's copy,
# through GLLM_SHARED_DIR set for these steps alone
shared_env=""
if [ -d e2e/model ]; then
  mkdir -p "$work/shared/assets/models" && ln -s "$B/e2e/model" "$work/shared/assets/models/stories260K-hf"
  shared_env="GLLM_SHARED_DIR=$work/shared"
fi
for t in bin/test_cuda_*; do # tests/cuda files added after this script was written
  n=$(basename "$t")
  case $n in test_cuda_ops|test_cuda_matmul|test_cuda_attention|test_cuda_model) continue ;; esac
  step "${n#test_}" 120 "$(run env $shared_env "$t")"
done

# ---------------------------------------------------------------- 2. end to end
if [ -d e2e ] && [ -x bin/gtrain ]; then
  if [ "$has_gpu" = 1 ]; then
    # two steps on the GPU, then the same first step on the CPU: the first step's
    # loss (same weights, same batch) must agree to bf16 precision
    step gtrain 120 "rm -rf '$work/e2e' && cp -r e2e '$work/e2e' && cd '$work/e2e' &&
      $(run "$B/bin/gtrain" --backend cuda train.json) &&
      python3 - <<'PY'
import json, math
rows = [json.loads(l) for l in open('run/metrics.jsonl')]
steps = [r for r in rows if 'loss' in r and 'step' in r]
assert steps, 'no step rows in metrics.jsonl'
assert all(math.isfinite(r['loss']) for r in steps), 'non-finite loss'
print('gpu losses', [round(r['loss'], 5) for r in steps])
PY
      sed -i 's/\"backend\": \"cuda\"/\"backend\": \"cpu\"/; s/\"max_steps\": 2/\"max_steps\": 1/; s/\"out_dir\": \"run\"/\"out_dir\": \"run_cpu\"/' train.json &&
      $(run "$B/bin/gtrain" --backend cpu train.json) > /dev/null &&
      python3 - <<'PY'
import json
def first(p):
    return next(r['loss'] for r in map(json.loads, open(p)) if 'loss' in r and 'step' in r)
g, c = first('run/metrics.jsonl'), first('run_cpu/metrics.jsonl')
rel = abs(g - c) / abs(c)
print(f'step 1 loss: cuda {g:.5f} cpu {c:.5f} rel diff {rel:.2e} (tol 1e-2)')
assert rel < 1e-2
PY"
  else
    step gtrain 60 "$(run bin/gtrain --help) >/dev/null && echo 'SKIP: gtrain loads; no GPU to train on'"
  fi
else
  row gtrain skipped 0 "no e2e inputs in the bundle (../shared was absent when it was built) or no gtrain"
fi
if [ -x bin/ginfer ]; then
  if [ "$has_gpu" = 1 ] && [ -d e2e ]; then
    # greedy on the GPU, then the same on the CPU: how many completions agree is
    # reported (bf16 against fp32 may pick another token where two are close).
    # GLLM_GINFER_ARGS overrides the invocation (MODEL, BACKEND, INPUT, OUTPUT replaced).
    gargs=${GLLM_GINFER_ARGS:---model MODEL --backend BACKEND --quiet INPUT OUTPUT}
    gargs=${gargs//MODEL/$B/e2e/model}
    gargs=${gargs//INPUT/$B/e2e/prompts.jsonl}
    g_gpu=${gargs//BACKEND/cuda}; g_gpu=${g_gpu//OUTPUT/$work/ginfer_gpu.jsonl}
    g_cpu=${gargs//BACKEND/cpu}; g_cpu=${g_cpu//OUTPUT/$work/ginfer_cpu.jsonl}
    step ginfer 90 "$(run bin/ginfer $g_gpu) && $(run bin/ginfer $g_cpu) && python3 - <<'PY'
import json
g = [json.loads(l) for l in open('$work/ginfer_gpu.jsonl')]
c = [json.loads(l) for l in open('$work/ginfer_cpu.jsonl')]
assert len(g) == 3, f'{len(g)} output lines for 3 prompts'
assert all(r.get('error') is None for r in g), g
same = sum(a['choices'][0]['token_ids'] == b['choices'][0]['token_ids'] for a, b in zip(g, c))
print(f'ginfer: 3 results on the GPU; {same} of 3 greedy completions equal to the CPU ones;',
      [r['choices'][0]['text'][:40] for r in g])
PY"
  else
    step ginfer 30 "$(run bin/ginfer --help) >/dev/null && echo 'SKIP: ginfer loads; no GPU (or no e2e inputs)'"
  fi
else
  row ginfer skipped 0 "not in the bundle (no src/cli/ginfer.c when it was built)"
fi

# ---------------------------------------------------------------- 3. sanitizers
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
: > "$sanlog"
if [ "$has_gpu" = 0 ]; then
  row sanitizers skipped 0 "no GPU"
elif [ -z "$san" ]; then
  row sanitizers skipped 0 "compute-sanitizer not on this machine"
else
  # short cases: the first launches of each test (--launch-count), so one tool
  # run stays within its timeout; errors exit 99
  for spec in "memcheck:test_cuda_ops:400" "memcheck:test_cuda_attention:200" \
              "racecheck:test_cuda_attention:60" "racecheck:test_cuda_matmul:60" \
              "synccheck:test_cuda_matmul:200" "synccheck:test_cuda_attention:100"; do
    IFS=: read -r tool t count <<< "$spec"
    step "$tool-${t#test_cuda_}" 90 "$(run "$san" --tool "$tool" --error-exitcode 99 --launch-count "$count" bin/$t) > '$work/san.txt' 2>&1; rc=\$?;
      { echo '=== $tool $t (first $count launches)'; grep -vE '^(seed|  )' '$work/san.txt' | tail -40; } >> '$sanlog';
      grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|not supported' '$work/san.txt' | tail -2;
      if grep -q 'not supported' '$work/san.txt'; then echo 'SKIP: compute-sanitizer does not support this device here'; exit 77; fi;
      exit \$rc" skip_ok
  done
fi

# ---------------------------------------------------------------- 4. benches
step bench-gemm 150 "$(run bin/bench_matmul --out '$OUT_DIR/bench_matmul') && rm -f '$OUT_DIR/bench_matmul.json'"
if [ "$has_gpu" = 1 ]; then
  step bench-attention 150 "bash bench/run_attention_bench.sh bin > '$OUT_DIR/bench_attention.md.tmp' &&
    mv '$OUT_DIR/bench_attention.md.tmp' '$OUT_DIR/bench_attention.md' && tail -8 '$OUT_DIR/bench_attention.md'"
else
  step bench-attention 60 "$(run bin/bench_attention)"
fi
step bench-adamw-kernels 120 "$(run bin/bench_kernels --out '$OUT_DIR/bench_kernels') && rm -f '$OUT_DIR/bench_kernels.json'"
if [ "$has_gpu" = 1 ]; then
  step bench-train 240 "bash bench/gpu_train_vs_torch.sh bin '$OUT_DIR/bench_train.md'"
else
  step bench-train 30 "$(run bin/bench_train_cpu) 2>&1 | grep -q usage && echo 'SKIP: bench_train_cpu loads; no GPU'"
fi
# issue 9's GPU figures: the engine against transformers generate on the GPU (256 prompts,
# SmolLM2-135M's shape with random weights) and the batch-1 decode step against the HBM floor;
# its section is appended to bench_train.md (the output folder holds at most 8 files)
if [ -f bench/infer_gpu.py ] && [ -x bin/bench_infer ]; then
  if [ "$has_gpu" = 1 ]; then
    step bench-infer 180 "$(run python3 bench/infer_gpu.py) --bin bin --out '$OUT_DIR/bench_train.md'"
  else
    step bench-infer 30 "python3 bench/infer_gpu.py --bin bin --out /dev/null --check"
  fi
else
  row bench-infer skipped 0 "bench/infer_gpu.py or bench_infer not in the bundle"
fi
# issue 11's single-GPU fine-tuning benchmark: whole gtrain steps (clip, AdamW) against PyTorch
# (fp32 + bf16 autocast, SDPA, fused AdamW) at GPT-2 124M and a 1B Llama, peak memory and MFU;
# also appended to bench_train.md
if [ -f bench/train_gpu_vs_torch.py ] && [ -x bin/gtrain ]; then
  if [ "$has_gpu" = 1 ]; then
    step bench-train-full 240 "$(run python3 bench/train_gpu_vs_torch.py) --bin bin --out '$OUT_DIR/bench_train.md'"
  else
    step bench-train-full 30 "python3 bench/train_gpu_vs_torch.py --bin bin --out /dev/null --check"
  fi
else
  row bench-train-full skipped 0 "bench/train_gpu_vs_torch.py or gtrain not in the bundle"
fi

# ---------------------------------------------------------------- 5. studies (issue 12)
# The size sweep (bench/tradeoff/sizes.py, config sizes_gpu.json): random-weight models of real
# shapes from GPT-2 124M up to Llama 8B, written there on the fly, each trained (gtrain) and
# served (bench_infer: prefill, decode), peak memory and time per token beside the analytic
# model. Smallest first; sizes.json is rewritten after every unit, so a cut keeps what ran. It
# gets what is left of the total budget, at most GLLM_SIZES_TIMEOUT (default 240 s), and stops
# starting models 20 s before that; for the whole sweep run it alone:
#   GLLM_CHECK_STEPS=sizes GLLM_CHECK_BUDGET=560 GLLM_SIZES_TIMEOUT=550 bash .gpu/gpu_check.sh
if [ -f bench/tradeoff/sizes.py ] && [ -x bin/gtrain ] && [ -x bin/bench_infer ]; then
  if [ "$has_gpu" = 1 ]; then
    sl=${GLLM_SIZES_TIMEOUT:-240}
    left=$((deadline - $(date +%s) - 5))
    [ "$sl" -gt "$left" ] && sl=$left
    step sizes-sweep "$sl" "$(run python3 bench/tradeoff/sizes.py) --config bench/tradeoff/sizes_gpu.json \
      --bin bin --json-only --out-dir '$OUT_DIR' --stem sizes --partial '$OUT_DIR/sizes.json' \
      --budget $((sl > 40 ? sl - 20 : 20))"
  else
    step sizes-sweep 60 "python3 bench/tradeoff/sizes.py --config bench/tradeoff/sizes_gpu.json --bin bin --dry-run &&
      echo 'SKIP: sizes.py checked its GPU config; no GPU to measure on'"
  fi
else
  row sizes-sweep skipped 0 "bench/tradeoff/sizes.py, gtrain or bench_infer not in the bundle"
fi

# ---------------------------------------------------------------- 6. the trade-off study (issue 12)
# bench/tradeoff/studies/gpu.json on the real SmolLM2-135M-Instruct (Q4_1 GGUF), SST-2 and TREC.
# The model comes in two halves that two earlier calls carried (../.gpu-model-a, ../.gpu-model-b
# beside the bundle; the call sequence is in scripts/gpu_bundle.sh): step tradeoff-model joins and
# checks them into models/. Step tradeoff-study runs the study into ../.gpu-study/ (kept on the
# warm machine: a rerun continues with the arms not done) for what is left of the budget, at most
# GLLM_TRADEOFF_TIMEOUT (default 300 s), starting no arm in its last 60 s (run.py --stop-after);
# then the report of what ran, packed into tradeoff_gpu.tar.gz (without the fine-tuned weights).
# Back here: tar xzf tradeoff_gpu.tar.gz; python3 bench/tradeoff/report.py tradeoff_gpu (plots).
parts_dir=${GLLM_MODEL_PARTS_DIR:-$B/..}
study_root=${GLLM_TRADEOFF_DIR:-$B/../.gpu-study}
[ "$has_gpu" = 1 ] || study_root=$work/tradeoff # a dry run checks the halves and leaves nothing behind
tmodel=$study_root/models/SmolLM2-135M-Instruct.Q4_1.gguf # never inside .gpu/: it would not travel
study_dir=$study_root/tradeoff_gpu
if [ ! -f bench/tradeoff/run.py ] || [ ! -f bench/tradeoff/studies/gpu.json ]; then
  wanted tradeoff && row tradeoff-study skipped 0 "bench/tradeoff/run.py or studies/gpu.json not in the bundle"
elif [ ! -f "$tmodel" ] && { [ ! -f "$parts_dir/.gpu-model-a/MANIFEST" ] || [ ! -f "$parts_dir/.gpu-model-b/MANIFEST" ]; }; then
  wanted tradeoff && row tradeoff-study skipped 0 "the model is not on this machine: carry .gpu-model-a and .gpu-model-b in the two calls before this one (scripts/gpu_bundle.sh, header)"
else
  if [ ! -f "$tmodel" ]; then
    mkdir -p "$(dirname "$tmodel")"
    step tradeoff-model 60 "set -e; for p in a b; do (cd '$parts_dir/.gpu-model-'\$p && sha256sum -c --quiet part.sha256); done
      whole=\$(sed -n 's/^whole //p' '$parts_dir/.gpu-model-a/MANIFEST')
      cat '$parts_dir'/.gpu-model-a/*.part '$parts_dir'/.gpu-model-b/*.part > '$tmodel.tmp'
      echo \"\$whole  $tmodel.tmp\" | sha256sum -c --quiet && mv '$tmodel.tmp' '$tmodel'
      echo \"model joined from its two halves: \$(stat -c %s '$tmodel') bytes, SHA-256 \$whole$(
        [ "$has_gpu" = 1 ] || echo ' (no GPU: joined into a temporary folder to check the halves)')\""
  fi
  if [ ! -f "$tmodel" ]; then
    wanted tradeoff && row tradeoff-study "NOT RUN" 0 "the model halves did not join (see tradeoff-model)"
  elif [ "$has_gpu" = 1 ]; then
    tl=${GLLM_TRADEOFF_TIMEOUT:-300}
    left=$((deadline - $(date +%s) - 15))
    [ "$tl" -gt "$left" ] && tl=$left
    mkdir -p "$study_dir"
    step tradeoff-study "$tl" "GLLM_BUILD_DIR=bin $(run python3 bench/tradeoff/run.py bench/tradeoff/studies/gpu.json) \
      --model '$tmodel' --out '$study_dir' --stop-after $((tl > 120 ? tl - 60 : tl / 2)) && python3 - '$study_dir' <<'PY'
import glob, json, os, sys
d = sys.argv[1]
arms = [json.load(open(p)) for p in glob.glob(os.path.join(d, 'arms', '*.json'))]
runs = [json.loads(l) for l in open(os.path.join(d, 'runs.jsonl')) if l.strip()]
print('tradeoff: %d arm records (%d scored) after %d invocation(s)%s; report.md written' % (
    len(arms), sum(1 for a in arms if 'examples' in a), len(runs),
    ', stopped for time: the same call continues it' if runs[-1].get('stopped') else ', study complete'))
PY
      r=\$?; tar czf '$OUT_DIR/tradeoff_gpu.tar.gz' -C '$study_root' --exclude work tradeoff_gpu; exit \$r"
  else
    # no GPU: the study's config, binaries, model and data must resolve here; nothing runs
    step tradeoff-study 60 "GLLM_BUILD_DIR=bin python3 bench/tradeoff/run.py bench/tradeoff/studies/gpu.json \
      --model '$tmodel' --check && echo 'SKIP: the GPU study resolves its binaries, model and data; no GPU to run it on'"
  fi
fi

# ---------------------------------------------------------------- end
rm -f "$OUT_DIR"/*.tmp
if [ "$(find "$OUT_DIR" -maxdepth 1 -type f | wc -l)" -gt 8 ] && [ -f "$sanlog" ]; then
  # the device tool returns at most 8 files: the sanitizer log goes into check.log
  { echo "=== sanitizer.log (folded in: more than 8 files)"; cat "$sanlog"; } >> "$log" && rm -f "$sanlog"
fi
n_files=$(find "$OUT_DIR" -maxdepth 1 -type f | wc -l)
{
  echo
  echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ) after $(( $(date +%s) - start )) s; $failures step(s) failed or timed out; $n_files files in the output folder"
} | tee -a "$summary"
[ "$n_files" -le 8 ] || echo "gpu_check: more than 8 files in $OUT_DIR" >&2
[ "$failures" = 0 ]
