#!/usr/bin/env bash
# Everything the CUDA backend needs checked on a lent GPU, in one call:
#   build (CUDA on, for this GPU's architecture unless GLLM_CUDA_ARCHS is set),
#   ctest (every test; the tests/cuda ones run in full here),
#   compute-sanitizer memcheck and racecheck on the CUDA op tests,
#   every bench (matmul vs cuBLASLt, attention vs PyTorch flash SDPA, memory-bound kernels),
# then result tables under $OUT (and bench/results/<bench>_<device>_<date>.md) and a
# short summary printed last.
#
#   scripts/gpu_run.sh [STAGES]     STAGES: comma list of build,test,sanitize,bench (default all)
#   env: BUILD (default build-gpu; reused when already built), OUT (default ./gpu-out),
#        GLLM_BUILT_AT (source path of a carried build folder, e.g. /work/main),
#        GLLM_CUDA_ARCHS (e.g. "80;90a" for the fat binary), SAN_TIMEOUT (seconds per tool run)
#
# The device tool gives one command 10 minutes: when a full run does not fit, call it
# in two parts (build,test then sanitize,bench); the build folder survives between
# calls on a warm machine. $OUT keeps at most 8 files: everything goes into 7.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# A build folder made on the development machine and carried with the run holds
# absolute paths (CMakeCache, ctest files, fixture paths compiled into the
# tests) to the checkout it was built from: GLLM_BUILT_AT=/work/main points that
# path at this checkout, so the carried build runs as it is.
if [ -n "${GLLM_BUILT_AT:-}" ] && [ ! -e "$GLLM_BUILT_AT" ]; then
  mkdir -p "$(dirname "$GLLM_BUILT_AT")" && ln -s "$PWD" "$GLLM_BUILT_AT"
fi
stages=${1:-build,test,sanitize,bench}
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-$PWD/gpu-out}
SAN_TIMEOUT=${SAN_TIMEOUT:-240}
mkdir -p "$OUT" bench/results
summary="$OUT/summary.md"
has() { [[ ",$stages," == *",$1,"* ]]; }
note() { echo "$*" | tee -a "$summary"; }

# ---------------------------------------------------------------- environment
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
cuda=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
date_utc=$(date -u +%Y-%m-%d)
dev_tag=$(echo "${gpu_name:-nogpu}" | tr -c 'A-Za-z0-9\n' '_' | sed 's/__*/_/g; s/_$//')
{
  echo "# gllm GPU run"
  echo
  echo "device: ${gpu_name:-none} (compute capability ${cap:-?}), driver ${driver:-?}, CUDA ${cuda:-?}, date $date_utc, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
} >> "$summary"
results=()

# ---------------------------------------------------------------- build
if has build; then
  if [ -z "${GLLM_CUDA_ARCHS:-}" ]; then
    case "$cap" in
      9.0) GLLM_CUDA_ARCHS="90a" ;;
      8.*) GLLM_CUDA_ARCHS="80" ;;
      *) GLLM_CUDA_ARCHS="80;90a" ;;
    esac
  fi
  t0=$(date +%s)
  if cmake -S . -B "$BUILD" -DGLLM_CUDA=ON -DGLLM_CUDA_ARCHS="$GLLM_CUDA_ARCHS" > "$OUT/build.log" 2>&1 &&
     cmake --build "$BUILD" -j"$(nproc)" >> "$OUT/build.log" 2>&1; then
    results+=("build (archs $GLLM_CUDA_ARCHS): ok in $(( $(date +%s) - t0 )) s")
  else
    results+=("build: FAILED (see build.log)")
    tail -40 "$OUT/build.log"
    printf '%s\n' "${results[@]}" | tee -a "$summary"
    exit 1
  fi
fi

# ---------------------------------------------------------------- tests
if has test; then
  ctest --test-dir "$BUILD" --output-on-failure > "$OUT/ctest.log" 2>&1
  rc=$?
  line=$(grep -E "tests passed|tests failed" "$OUT/ctest.log" | tail -1)
  results+=("ctest: ${line:-no summary line} (rc $rc)")
  # The GPU tests must have run, not skipped.
  for t in test_cuda_ops test_cuda_attention test_cuda_matmul test_cuda_model; do
    if grep -qE "cuda/$t .*(Skipped|Not Run)" "$OUT/ctest.log"; then
      results+=("  $t: SKIPPED on a GPU machine")
    elif grep -qE "cuda/$t .*Passed" "$OUT/ctest.log"; then
      results+=("  $t: passed")
    elif grep -q "cuda/$t" "$OUT/ctest.log"; then
      results+=("  $t: FAILED")
    fi
  done
fi

# ---------------------------------------------------------------- sanitizers
if has sanitize; then
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  : > "$OUT/sanitizer.log"
  if [ -z "$san" ]; then
    results+=("compute-sanitizer: not found")
  else
    for t in test_cuda_ops test_cuda_attention test_cuda_matmul test_cuda_model; do
      [ -x "$BUILD/$t" ] || continue
      for tool in memcheck racecheck; do
        echo "=== $tool $t" >> "$OUT/sanitizer.log"
        (cd "$BUILD" && timeout "$SAN_TIMEOUT" "$san" --tool "$tool" --error-exitcode 99 \
           "./$t") > "$OUT/san_one.log" 2>&1
        rc=$?
        tail -60 "$OUT/san_one.log" >> "$OUT/sanitizer.log"
        errs=$(grep -Eo "ERROR SUMMARY: [0-9]+ error|RACECHECK SUMMARY: [0-9]+ hazard" "$OUT/san_one.log" | tail -1)
        case $rc in
          0) verdict="clean" ;;
          124) verdict="timed out after ${SAN_TIMEOUT}s" ;;
          99) verdict="ERRORS" ;;
          *) verdict="test failed (rc $rc)" ;;
        esac
        results+=("$tool $t: $verdict ${errs:+($errs)}")
      done
    done
    rm -f "$OUT/san_one.log"
  fi
fi

# ---------------------------------------------------------------- benches
if has bench; then
  : > "$OUT/bench.log"
  if [ -x "$BUILD/bench_matmul" ]; then
    "$BUILD/bench_matmul" --out "$OUT/bench_matmul" >> "$OUT/bench.log" 2>&1 &&
      results+=("bench_matmul: $OUT/bench_matmul.md") || results+=("bench_matmul: FAILED")
    rm -f "$OUT/bench_matmul.json"
  fi
  if [ -x "$BUILD/bench_attention" ] && [ -x bench/run_attention_bench.sh ]; then
    bench/run_attention_bench.sh "$BUILD" > "$OUT/bench_attention.md" 2>> "$OUT/bench.log" &&
      results+=("bench_attention: $OUT/bench_attention.md") || results+=("bench_attention: FAILED (see bench.log)")
  fi
  if [ -x "$BUILD/bench_kernels" ]; then
    "$BUILD/bench_kernels" --out "$OUT/bench_kernels" >> "$OUT/bench.log" 2>&1 &&
      results+=("bench_kernels: $OUT/bench_kernels.md") || results+=("bench_kernels: FAILED")
    rm -f "$OUT/bench_kernels.json"
  fi
  header="device: ${gpu_name:-?}, driver ${driver:-?}, CUDA ${cuda:-?}, date $date_utc"
  for b in bench_matmul bench_attention bench_kernels; do
    [ -s "$OUT/$b.md" ] || continue
    { echo "# ${b#bench_} — $header"; echo; cat "$OUT/$b.md"; } > "$OUT/$b.tmp" && mv "$OUT/$b.tmp" "$OUT/$b.md"
    cp "$OUT/$b.md" "bench/results/${b#bench_}_${dev_tag}_${date_utc}.md"
  done
fi

# ---------------------------------------------------------------- summary (printed last)
{
  echo
  echo "| step | result |"
  echo "|---|---|"
  for r in "${results[@]}"; do echo "| ${r%%:*} | ${r#*: } |"; done
} >> "$summary"
for b in bench_kernels bench_attention bench_matmul; do
  [ -s "$OUT/$b.md" ] && { echo; tail -n 25 "$OUT/$b.md"; }
done
echo
cat "$summary"
