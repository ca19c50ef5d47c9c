#!/usr/bin/env bash
# Why a gllm build slows down under a competing load: one training step of
# stories260K (8 x 256, 2 threads) idle and with one busy process per core,
# the share of cycles perf finds in libgomp (OpenMP spin-waiting), in OpenBLAS
# and in the pool's wait, the number of OpenMP parallel regions per step
# (counted by an LD_PRELOAD shim around GOMP_parallel), and the step time with
# the OpenMP wait policy made passive from outside (OMP_WAIT_POLICY, which
# libgomp reads only when it loads). Prints a markdown table.
# usage: bench/cpu_load_diag.sh BUILD_DIR [LABEL]   (run it alone: under the CPU lock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
label=${2:-$build}
model=${GLLM_DIAG_MODEL:-$here/../../shared/assets/models/stories260K-hf}
work=$(mktemp -d)
loadpids=()
cleanup() { [ ${#loadpids[@]} -gt 0 ] && kill "${loadpids[@]}" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
load_on() { for _ in $(seq "$(nproc)"); do sh -c 'while :; do :; done' & loadpids+=($!); done; sleep 0.5; }
load_off() { kill "${loadpids[@]}"; wait "${loadpids[@]}" 2>/dev/null || true; loadpids=(); }
step_ms() { "$@" 2>/dev/null | python3 -c 'import sys,json; print(next(json.loads(l)["ms_per_step"] for l in sys.stdin if l.startswith("{")))'; }
bench() { env "$@" "$build/bench_train_cpu" "$model" 8 256 2 10 2; }

# the shim: counts GOMP_parallel calls, prints the count at exit
cat > "$work/count.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
static unsigned long n;
void GOMP_parallel(void (*fn)(void *), void *data, unsigned nt, unsigned flags)
{
    static void (*real)(void (*)(void *), void *, unsigned, unsigned);
    if (!real)
        real = (void (*)(void (*)(void *), void *, unsigned, unsigned))dlsym(RTLD_NEXT, "GOMP_parallel");
    n++;
    real(fn, data, nt, flags);
}
__attribute__((destructor)) static void report(void) { fprintf(stderr, "GOMP_parallel calls: %lu\n", n); }
EOF
cc -O2 -shared -fPIC -o "$work/count.so" "$work/count.c" -ldl
regions=$(LD_PRELOAD=$work/count.so "$build/bench_train_cpu" "$model" 8 256 2 10 2 2>&1 >/dev/null |
          sed -n 's/GOMP_parallel calls: //p')
# 12 steps ran (2 warm-up + 10) plus model loading
per_step=$(( regions / 12 ))

share() { # perf's share of cycles in a DSO / symbol pattern
  perf report -i "$1" --no-children --sort dso,sym 2>/dev/null | grep -v '^#' |
    awk -v pat="$2" '$0 ~ pat { gsub("%", "", $1); s += $1 } END { printf "%.0f%%", s }'
}

idle=$(step_ms bench)
idle1=$(step_ms env OMP_NUM_THREADS=1 "$build/bench_train_cpu" "$model" 8 256 1 10 2)
perf record -q -o "$work/idle.data" -- "$build/bench_train_cpu" "$model" 8 256 2 10 2 >/dev/null 2>&1
load_on
loaded=$(step_ms bench)
passive=$(step_ms bench OMP_WAIT_POLICY=passive)
loaded1=$(step_ms env OMP_NUM_THREADS=1 "$build/bench_train_cpu" "$model" 8 256 1 10 2)
perf record -q -o "$work/loaded.data" -- "$build/bench_train_cpu" "$model" 8 256 2 10 2 >/dev/null 2>&1
load_off

echo "| build | OpenMP regions per step | step idle (ms) | step loaded (ms) | slowdown | loaded, OMP_WAIT_POLICY=passive (ms) | 1 thread idle / loaded (ms) | libgomp cycles idle / loaded | OpenBLAS cycles idle / loaded | pool wait cycles idle / loaded |"
echo "|---|---|---|---|---|---|---|---|---|---|"
slow=$(python3 -c "print(f'{$loaded / $idle:.1f}x')")
echo "| $label | $per_step | $idle | $loaded | $slow | $passive | $idle1 / $loaded1 |" \
     "$(share "$work/idle.data" libgomp) / $(share "$work/loaded.data" libgomp) |" \
     "$(share "$work/idle.data" openblas) / $(share "$work/loaded.data" openblas) |" \
     "$(share "$work/idle.data" 'worker_main|gllm_cpu_pool_run') / $(share "$work/loaded.data" 'worker_main|gllm_cpu_pool_run') |"
