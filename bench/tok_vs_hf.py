#!/usr/bin/env python3
"""Tokenizer throughput, gllm beside the `tokenizers` package, in one run.

For each tokenizer and text: gllm's bench_tok (one thread, whole text as one
string; then the lines as separate documents on 1 and 2 threads) and HF
tokenizers with one thread (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false):
Tokenizer.encode of the whole text, and encode_batch of the lines. The ids of
the whole-text encode are compared (hash of all ids). Writes the table to
bench/results/tok_<date>.md.

usage: python3 bench/tok_vs_hf.py [--build build] [--shared ../shared] [--reps 3]
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
from tokenizers import Tokenizer  # noqa: E402  (the environment must be set first)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = ["gpt2", "llama3", "qwen3", "mistral"]
TEXTS = {"wikitext2": "assets/datasets/wikitext2/test.txt",
         "shakespeare": "assets/datasets/tinyshakespeare/input.txt"}


def load_hf(path):
    """As scripts/make_tok_fixtures.py: drop merges whose result is not in the
    vocab (GPT-2's file has one), which `tokenizers` refuses to load."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    vocab = j["model"]["vocab"]
    j["model"]["merges"] = [m for m in j["model"]["merges"]
                            if "".join(m.split(" ", 1) if isinstance(m, str) else m) in vocab]
    return Tokenizer.from_str(json.dumps(j))


def fnv_ids(ids):
    h = 0xcbf29ce484222325
    for b in "".join("%d," % i for i in ids).encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def best_of(reps, fn):
    best, out = 1e30, None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    exe = os.path.join(args.build, "bench_tok")
    import tokenizers
    rows = []
    for tname in TOKENIZERS:
        tdir = os.path.join(args.shared, "assets", "tokenizers", tname)
        hf = load_hf(os.path.join(tdir, "tokenizer.json"))
        for xname, xrel in TEXTS.items():
            path = os.path.join(args.shared, xrel)
            out = subprocess.run([exe, tdir, path, str(args.reps), "2"], check=True,
                                 capture_output=True, text=True).stdout
            g = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            single = g[0]
            lines1 = next(r for r in g if r["mode"] == "lines" and r["threads"] == 1)
            lines2 = next(r for r in g if r["mode"] == "lines" and r["threads"] == 2)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            nbytes = len(text.encode("utf-8"))
            lines = text.splitlines(keepends=True)
            t_one, enc = best_of(args.reps, lambda: hf.encode(text, add_special_tokens=False).ids)
            t_batch, _ = best_of(args.reps, lambda: hf.encode_batch(lines, add_special_tokens=False))
            hf_one = nbytes / t_one / 1e6
            hf_batch = nbytes / t_batch / 1e6
            same = fnv_ids(enc) == single["ids_fnv"] and len(enc) == single["tokens"]
            rows.append((tname, xname, nbytes, single["tokens"], single["mb_s"], hf_one,
                         lines1["mb_s"], hf_batch, lines2["mb_s"], same))
            print("%-8s %-11s gllm %7.2f MB/s  hf %6.2f MB/s  x%5.1f | lines: gllm %7.2f  hf %6.2f  x%5.1f"
                  " | gllm 2 threads %7.2f | ids identical: %s"
                  % (tname, xname, single["mb_s"], hf_one, single["mb_s"] / hf_one, lines1["mb_s"],
                     hf_batch, lines1["mb_s"] / hf_batch, lines2["mb_s"], same), flush=True)
    date = datetime.date.today().isoformat()
    md = ["# Tokenizer encode throughput: gllm vs HF tokenizers %s" % tokenizers.__version__, "",
          "%s, CPU: %s (%d cores visible), one thread unless noted; best of %d runs; "
          "MB = 10^6 bytes of UTF-8 input; produced by bench/tok_vs_hf.py."
          % (date, cpu_name(), os.cpu_count(), args.reps), "",
          "*whole*: the text as one string (`Tokenizer.encode`). *lines*: each line a document "
          "(`encode_batch` with RAYON_NUM_THREADS=1; gllm: a loop of gllm_tok_encode). "
          "The 2-thread column only shows scaling on an otherwise idle machine.", "",
          "| tokenizer | text | bytes | tokens | gllm whole MB/s | HF whole MB/s | ratio | "
          "gllm lines MB/s | HF lines MB/s | ratio | gllm lines, 2 threads | ids identical |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append("| %s | %s | %d | %d | %.2f | %.2f | %.1fx | %.2f | %.2f | %.1fx | %.2f | %s |"
                  % (r[0], r[1], r[2], r[3], r[4], r[5], r[4] / r[5], r[6], r[7], r[6] / r[7], r[8],
                     "yes" if r[9] else "NO"))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    dest = os.path.join(ROOT, "bench", "results", "tok_%s.md" % date)
    with open(dest, "w") as f:
        f.write("\n".join(md) + "\n")
    print("wrote", dest)


if __name__ == "__main__":
    main()
