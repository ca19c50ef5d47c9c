#!/usr/bin/env bash
# Tokenizing a ~100 MB JSONL dataset on 1 and 2 threads (both cores), one run.
# usage: bench/data_scaling.sh [BUILD_DIR] [TOKENIZER_DIR] [MB]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
tok=${2:-$here/../../shared/assets/tokenizers/llama3}
mb=${3:-100}
data=$(mktemp --suffix=.jsonl)
trap 'rm -f "$data"' EXIT
python3 - "$here/../../shared/assets/datasets/wikitext2/test.txt" "$data" "$mb" <<'PY'
import json, sys
src, out, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
paras = [p.strip() for p in open(src, encoding="utf-8").read().split("\n \n") if p.strip()]
with open(out, "w", encoding="utf-8") as f:
    size, i = 0, 0
    while size < mb * 1_000_000:
        line = json.dumps({"text": paras[i % len(paras)]}) + "\n"
        f.write(line)
        size += len(line.encode())
        i += 1
PY
echo "# dataset tokenization, $(basename "$tok"), $(du -m "$data" | cut -f1) MB JSONL, $(date -u +%Y-%m-%dT%H:%MZ), $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
"$build/bench_data" "$tok" "$data" 1 2
