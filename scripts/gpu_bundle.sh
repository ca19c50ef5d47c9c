#!/usr/bin/env bash
# Build, here on the development machine, everything a GPU run needs, and pack it
# into one ignored folder (.gpu/) that travels with the working tree to a GPU
# machine that has the CUDA driver, runtime and cuBLAS but no compiler-side
# dependencies (cJSON, PCRE2, OpenBLAS) and no network. There, one command gives
# every CUDA verdict:   bash .gpu/gpu_check.sh [OUT_DIR]   (default $OUT)
# (.gpu/ is git-ignored: the device tool takes it when its carry names ".gpu").
#
#   scripts/gpu_bundle.sh           configure (once), build, pack, print the size
#   env: GLLM_BUNDLE_BUILD  build folder (default build-bundle; reused)
#        GLLM_BUNDLE_DIR    the bundle (default .gpu)
#        JOBS               parallel build jobs (default 2)
#
# What it builds: every test in tests/cuda, test_backend_ops (the op harness,
# which runs its CUDA backend against the CPU one), test_backend_queue and
# test_comm_nccl (queues/events and one NCCL rank on the GPU), the GPU benches and
# bench_infer (the size sweep's inference side), gtrain and
# ginfer (when src/cli/ginfer.c exists), for sm_90a only (H100/H200: the wgmma
# path needs it), machine code without PTX, fat binaries compressed
# (-Xfatbin=-compress-all). The binaries carry an RPATH of $ORIGIN/../lib
# (DT_RPATH, so it also serves the libraries' own dependencies), where the
# shared libraries they need that a CUDA + PyTorch image may lack are copied
# (cJSON, PCRE2, libgomp; OpenBLAS is left out: -DGLLM_BLAS=OFF, see below).
# The bundle fails to build when it exceeds 64 MiB (the device tool's limit for
# everything that travels), and the size is printed.
#
# The trade-off study of issue 12 (bench/tradeoff/studies/gpu.json) also needs the
# real model, SmolLM2-135M-Instruct Q4_1 (98 MB: more than one call carries). The
# bundle packs the study's scripts and data sets into .gpu/ and writes the model in
# two halves, .gpu-model-a/ and .gpu-model-b/ (ignored; each under 64 MiB with the
# tracked tree; a MANIFEST in each with the SHA-256 of the half and of the whole
# file), from models/ (scripts/get_models.sh) or ../shared. Without the model there
# are no halves, and gpu_check.sh skips the study with a message. Folders a call
# carries stay on the device machine while it is warm (30 s after a call), so the
# device calls are, back to back (each within 30 s of the last one's end):
#   1. carry [".gpu-model-a"], command: sha256sum -c .gpu-model-a/part.sha256
#   2. carry [".gpu-model-b"], command: sha256sum -c .gpu-model-b/part.sha256
#   3. carry [".gpu"], command:
#        GLLM_CHECK_STEPS=tradeoff GLLM_CHECK_BUDGET=560 GLLM_TRADEOFF_TIMEOUT=540 \
#        bash .gpu/gpu_check.sh "$OUT"            (timeout_s 600)
# Call 3 joins and checks the halves into .gpu/models/ (step tradeoff-model), runs
# the study (step tradeoff-study, stopping new arms in time; a rerun of call 3 on
# the warm machine continues it from .gpu-study/) and returns the results as
# tradeoff_gpu.tar.gz. Calls 1 and 2 must not name .gpu, and call 3 must not name
# the halves: a carried folder replaces the one there, and each call carries at
# most 64 MiB. A plain `bash .gpu/gpu_check.sh "$OUT"` runs the study too when the
# halves are there, with what is left of its budget (GLLM_TRADEOFF_TIMEOUT caps it).
#   env: GLLM_BUNDLE_MODEL  the GGUF to split (default: models/, else ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BUILD=${GLLM_BUNDLE_BUILD:-build-bundle}
DEST=${GLLM_BUNDLE_DIR:-.gpu}
JOBS=${JOBS:-2}
limit=$((64 * 1024 * 1024))

t0=$(date +%s)
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"
# ---------------------------------------------------------------- build
# Without OpenBLAS: its library (35 MiB with its Fortran runtime) would take most
# of the size budget, and the CPU references the GPU tests compare against are
# small; this build also keeps the -DGLLM_BLAS=OFF configuration compiling.
# Without MPI: a GPU run has one process per GPU through NCCL (the image has it).
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGLLM_CUDA=ON -DGLLM_CUDA_ARCHS=90a-real \
  -DGLLM_BLAS=OFF -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DCMAKE_CUDA_FLAGS=-Xfatbin=-compress-all \
  '-DCMAKE_BUILD_RPATH=$ORIGIN/../lib' -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags > /dev/null
tests=()
for f in tests/backend/test_backend_ops.c tests/backend/test_backend_queue.c tests/dist/test_comm_nccl.c \
         tests/cuda/test_*.c; do
  [ -f "$f" ] && tests+=("$(basename "$f" .c)")
done
benches=()
for b in bench_matmul bench_attention bench_kernels bench_train_cpu bench_infer; do
  [ -f "bench/$b.c" ] && benches+=("$b")
done
progs=()
for p in gtrain ginfer; do
  [ -f "src/cli/$p.c" ] && progs+=("$p")
done
cmake --build "$BUILD" -j"$JOBS" --target "${tests[@]}" "${benches[@]}" "${progs[@]}"
t_build=$(( $(date +%s) - t0 ))

# ---------------------------------------------------------------- pack
tmp="$DEST.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/lib" "$tmp/fixtures" "$tmp/bench"
for b in "${tests[@]}" "${benches[@]}" "${progs[@]}"; do
  cp "$BUILD/$b" "$tmp/bin/"
  strip --strip-unneeded "$tmp/bin/$b"
done

# Shared libraries: everything ldd resolves except the C library family, the
# C++ runtime, and CUDA's own libraries (the GPU image has those, and
# cuBLASLt alone is far over the size limit).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libutil\.|libresolv\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcublasLt|libnvidia|libnccl)'
for b in "$tmp"/bin/*; do
  ldd "$b" | awk '/=> \// { print $1, $3 }'
done | sort -u | while read -r soname path; do
  if [[ $soname =~ $skip ]]; then continue; fi
  [ -e "$tmp/lib/$soname" ] || cp -L "$path" "$tmp/lib/$soname"
done
for b in "$tmp"/bin/*; do
  if ldd "$b" | grep -q 'not found'; then
    echo "gpu_bundle: $b has unresolved libraries here:" >&2
    ldd "$b" | grep 'not found' >&2
    exit 1
  fi
done

# Fixtures the tests read (the HF reference models of tests/fixtures), found
# there through GLLM_FIXTURES, which gpu_check.sh sets.
for d in tests/fixtures/*/; do
  d=${d%/}
  [ -f "$d/reference.safetensors" ] && cp -r "$d" "$tmp/fixtures/"
done

# End-to-end inputs: the pretrained stories260K from ../shared (1 MB) and 64
# Alpaca records, when ../shared is here; gpu_check.sh skips that step otherwise.
shared=${GLLM_SHARED_DIR:-$root/../shared}
model="$shared/assets/models/stories260K-hf"
data="$shared/assets/datasets/instructions/alpaca_small_2k.json"
if [ -d "$model" ] && [ -f "$data" ]; then
  mkdir -p "$tmp/e2e"
  cp -r "$model" "$tmp/e2e/model"
  python3 - "$data" "$tmp/e2e/data.json" <<'PY'
import json, sys
records = json.load(open(sys.argv[1]))
json.dump(records[:64], open(sys.argv[2], "w"), indent=0)
PY
  cat > "$tmp/e2e/train.json" <<'JSON'
{
  "model": "model",
  "data": "data.json",
  "out_dir": "run",
  "backend": "cuda",
  "seq_len": 256,
  "batch_size": 8,
  "max_steps": 2,
  "lr": 2e-3,
  "warmup_steps": 0,
  "seed": 1234,
  "packing": true
}
JSON
  printf '%s\n' '{"id": "a", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}' \
    '{"id": "b", "prompt": "The little dog", "max_tokens": 32, "temperature": 0}' \
    '{"id": "c", "prompt": "Once upon a time there was", "max_tokens": 16, "temperature": 0}' \
    > "$tmp/e2e/prompts.jsonl"
fi

# The benches' PyTorch side and the check itself.
for f in bench/attn_sdpa_baseline.py bench/run_attention_bench.sh bench/gpu_train_vs_torch.sh \
         bench/make_bench_model.py bench/torch_cpu_fwdbwd.py bench/infer_gpu.py \
         bench/infer_vs_transformers.py bench/train_gpu_vs_torch.py; do
  [ -f "$f" ] && cp "$f" "$tmp/bench/"
done
mkdir -p "$tmp/bench/results"
cp bench/results/infer_prompts.txt "$tmp/bench/results/" # the CPU bench's 256 prompts, as ids
# The size sweep of issue 12 (bench/tradeoff/sizes.py: its analytic model, its report module
# and its GPU config; the random-weight models are written there, not carried).
mkdir -p "$tmp/bench/tradeoff"
for f in bench/tradeoff/cost.py bench/tradeoff/sizes.py bench/tradeoff/sizes_report.py \
         bench/tradeoff/sizes_gpu.json; do
  [ -f "$f" ] && cp "$f" "$tmp/bench/tradeoff/"
done
# The trade-off study of issue 12: its scripts and config, and the data sets it reads where the
# config looks (shared/assets/ below the bundle, which is the study's repository root there).
mkdir -p "$tmp/bench/tradeoff/studies"
for f in bench/tradeoff/run.py bench/tradeoff/report.py bench/tradeoff/plots.py; do
  cp "$f" "$tmp/bench/tradeoff/"
done
cp bench/tradeoff/studies/gpu.json "$tmp/bench/tradeoff/studies/"
if [ -d "$shared/assets/datasets/sst2" ] && [ -d "$shared/assets/datasets/trec" ]; then
  a="$tmp/shared/assets"
  mkdir -p "$a/datasets/sst2" "$a/datasets/trec" "$a/datasets/wikitext2" "$a/models"
  cp "$shared"/assets/datasets/sst2/{train.tsv,dev.tsv,test_labeled.tsv} "$a/datasets/sst2/"
  cp "$shared"/assets/datasets/trec/{train_5500.label,TREC_10.label} "$a/datasets/trec/"
  cp "$shared/assets/datasets/wikitext2/test.txt" "$a/datasets/wikitext2/"
  [ -d "$shared/assets/models/stories260K-hf" ] && cp -r "$shared/assets/models/stories260K-hf" "$a/models/"
fi
cp scripts/gpu_check.sh "$tmp/gpu_check.sh"
chmod +x "$tmp/gpu_check.sh"

{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -m), $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p'), archs 90a-real, -Xfatbin=-compress-all"
  echo "binaries: $(cd "$tmp/bin" && ls | tr '\n' ' ')"
  echo "libraries: $(cd "$tmp/lib" && ls | tr '\n' ' ')"
} > "$tmp/MANIFEST"

bytes=$(du -sb "$tmp" | cut -f1)
rm -rf "$DEST"
mv "$tmp" "$DEST"
tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
awk -v d="$DEST" -v b="$bytes" -v t="$tree_bytes" -v s="$t_build" 'BEGIN {
  printf "gpu_bundle: %s: %.1f MiB (limit 64 MiB; tracked tree %.1f MiB, together %.1f MiB), built in %d s\n",
         d, b / 1048576, t / 1048576, (b + t) / 1048576, s }'
(cd "$DEST" && du -ab bin lib | sort -rn | head -8 | awk '{ printf "  %7.2f MiB  %s\n", $1 / 1048576, $2 }')
if [ "$bytes" -gt "$limit" ]; then
  echo "gpu_bundle: FAILED: the bundle is over 64 MiB" >&2
  exit 1
fi
if [ $((bytes + tree_bytes)) -gt "$limit" ]; then
  echo "gpu_bundle: FAILED: bundle and tracked tree together are over the 64 MiB a device run carries" >&2
  exit 1
fi

# ---------------------------------------------------------------- the model, in two halves
# (see the header: two device calls carry them, a third joins them). The whole file is checked
# against the SHA-256 scripts/get_models.sh knows before it is split.
model_name=SmolLM2-135M-Instruct.Q4_1.gguf
model_sha=$(sed -n 's/^SHA256=//p' scripts/get_models.sh)
src=${GLLM_BUNDLE_MODEL:-}
if [ -z "$src" ]; then
  for c in "models/$model_name" "$shared/assets/models/SmolLM2-135M-Instruct-GGUF/$model_name"; do
    [ -f "$c" ] && { src=$c; break; }
  done
fi
rm -rf .gpu-model-a .gpu-model-b
if [ -z "$src" ]; then
  echo "gpu_bundle: no $model_name (scripts/get_models.sh): no model halves; gpu_check.sh skips the trade-off study"
elif [ "$(sha256sum "$src" | cut -d' ' -f1)" != "$model_sha" ]; then
  echo "gpu_bundle: FAILED: $src does not have the SHA-256 of scripts/get_models.sh ($model_sha)" >&2
  exit 1
else
  size=$(stat -c %s "$src")
  half=$(( (size + 1) / 2 ))
  for p in a b; do
    mkdir -p ".gpu-model-$p"
    if [ $p = a ]; then
      head -c "$half" "$src" > ".gpu-model-$p/$model_name.part"
    else
      tail -c +$((half + 1)) "$src" > ".gpu-model-$p/$model_name.part"
    fi
    (cd ".gpu-model-$p" && sha256sum "$model_name.part" > part.sha256)
    {
      echo "part $p of $model_name: bytes $(stat -c %s ".gpu-model-$p/$model_name.part") of $size"
      echo "whole $model_sha"
    } > ".gpu-model-$p/MANIFEST"
    pb=$(du -sb ".gpu-model-$p" | cut -f1)
    if [ $((pb + tree_bytes)) -gt "$limit" ]; then
      echo "gpu_bundle: FAILED: .gpu-model-$p and the tracked tree are over the 64 MiB of a device call" >&2
      exit 1
    fi
    awk -v p="$p" -v b="$pb" -v t="$tree_bytes" 'BEGIN {
      printf "gpu_bundle: .gpu-model-%s: %.1f MiB (with the tracked tree %.1f MiB)\n", p, b / 1048576, (b + t) / 1048576 }'
  done
fi
