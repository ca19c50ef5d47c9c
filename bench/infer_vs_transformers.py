#!/usr/bin/env python3
"""CPU batched inference: gllm's engine (build-cpu/bench_infer) against transformers
`generate` (batched, left-padded) on the same model, prompts and threads.

Model: SmolLM2-135M-Instruct as an HF folder (bench/make_smollm2_hf.py makes
models/SmolLM2-135M-Instruct from the GGUF in ../shared). 256 prompts:
  - 128 short instructions through the chat template, 32 new tokens each;
  - 128 sentiment classifications behind one shared 8-shot prefix, 3 new tokens.
Greedy, eos ignored (every system generates exactly the same number of tokens).
Runs (--runs): gllm with prefix sharing on (gllm) and off (gllm-nosharing), gllm
with batch invariance off (gllm-noinv, GLLM_BATCH_INVARIANT=0), gllm with KV blocks
of 16 tokens instead of the CPU default 4 (gllm-bs16), and transformers
(hf: batches of --hf-batch, prompts of one kind together, each batch left-padded
to its longest prompt), and optionally llama.cpp (llamacpp: llama-cpp-python built from its
PyPI source package, on an F32 GGUF that gllm's gconvert exports from the same folder;
continuous batching and prefix sharing through its low-level batch API, see
bench/llamacpp_batch.py). Runs go one after another; with --lock each run holds
that file's flock for itself only (one acquisition per run on a shared machine).
Results accumulate in bench/results/STEM.json (a later invocation with other
--runs keeps the runs already there for the same prompts) and STEM.md.

Usage: python3 bench/infer_vs_transformers.py --threads 2 --lock /work/cpu.lock
           [--runs gllm,hf] [--out infer_cpu_DATE] [--per-kind 128]
"""
import argparse
import fcntl
import json
import os
import resource
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUBJECTS = ["a cat", "the ocean", "autumn", "a robot", "coffee", "the moon", "a library",
            "mountains", "a bicycle", "rain", "a garden", "friendship", "music", "bread",
            "winter", "a train"]
TASKS = ["Write one sentence about {}.", "Give two facts about {}.", "Describe {} in a few words.",
         "Write a short haiku about {}.", "Explain why people like {}.",
         "List three words related to {}.", "Tell a tiny story about {}.",
         "What color is associated with {}?"]
SHOTS = [("I loved every minute of this film.", "positive"),
         ("The food was cold and bland.", "negative"),
         ("What a wonderful surprise!", "positive"),
         ("I will never buy this again.", "negative"),
         ("The staff were friendly and helpful.", "positive"),
         ("It broke after two days.", "negative"),
         ("Best concert I have been to.", "positive"),
         ("The service was painfully slow.", "negative")]
QUERIES = ["The movie was {} and the ending was {}.", "My {} arrived {} and works well.",
           "The hotel room was {} and {}.", "This {} is {} for the price."]
WORDS = ["great", "terrible", "late", "perfect", "noisy", "clean", "boring", "amazing",
         "broken", "fine", "phone", "chair", "lamp", "book", "slow", "fresh"]


def build_prompts(tok, per_kind=128):
    prompts = []
    for i in range(per_kind):
        text = TASKS[i % len(TASKS)].format(SUBJECTS[i // len(TASKS) % len(SUBJECTS)])
        chat = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                       add_generation_prompt=True)
        prompts.append((tok(chat, add_special_tokens=False)["input_ids"], 32, "instruction"))
    prefix = "Classify the sentiment of each review as positive or negative.\n\n"
    for s, label in SHOTS:
        prefix += f"Review: {s}\nSentiment: {label}\n\n"
    for i in range(per_kind):
        q = QUERIES[i % len(QUERIES)].format(WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)])
        prompts.append((tok(prefix + f"Review: {q}\nSentiment:", add_special_tokens=False)
                        ["input_ids"], 3, "classification"))
    return prompts


def cpu_s():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def run_hf(model, tok, prompts, batch, device="cpu"):
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    outs = [None] * len(prompts)
    t0, c0 = time.perf_counter(), cpu_s()
    for kind in ("instruction", "classification"):
        idx = [i for i, p in enumerate(prompts) if p[2] == kind]
        for b0 in range(0, len(idx), batch):
            sel = idx[b0:b0 + batch]
            L = max(len(prompts[i][0]) for i in sel)
            ids = torch.full((len(sel), L), pad, dtype=torch.long)
            mask = torch.zeros((len(sel), L), dtype=torch.long)
            for r, i in enumerate(sel):
                p = prompts[i][0]
                ids[r, L - len(p):] = torch.tensor(p)
                mask[r, L - len(p):] = 1
            n_new = prompts[sel[0]][1]
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad():
                out = model.generate(ids, attention_mask=mask, do_sample=False,
                                     max_new_tokens=n_new, min_new_tokens=n_new,
                                     eos_token_id=None, pad_token_id=pad, temperature=None,
                                     top_p=None, top_k=None)
            for r, i in enumerate(sel):
                outs[i] = out[r, L:].tolist()
    return time.perf_counter() - t0, cpu_s() - c0, outs


class Lock:
    """One acquisition of the shared CPU lock (flock on PATH) per unit of work: each
    system's run is timed alone, and others can build and test between units."""

    def __init__(self, path):
        self.path = path
        self.f = None

    def __enter__(self):
        if self.path:
            self.f = open(self.path, "a")
            t = time.perf_counter()
            fcntl.flock(self.f, fcntl.LOCK_EX)
            self.waited = time.perf_counter() - t
        return self

    def __exit__(self, *exc):
        if self.f:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()
            self.f = None


GLLM_RUNS = {"gllm": ([], "1", {}), "gllm-nosharing": (["--no-sharing"], "1", {}),
             "gllm-noinv": ([], "0", {}),
             # KV blocks of 16 tokens (vLLM's size, gllm's default on a GPU) instead of the
             # CPU default of 4: sharing is by whole blocks, so this recomputes up to 15
             # tokens of every shared prefix
             "gllm-bs16": (["--block-size", "16"], "1", {}),
             # the row-invariant matmul on OpenBLAS (its per-CPU strategy) instead of
             # gllm's own sgemm: what the kernel of cpu_gemm.c gains
             "gllm-openblas": ([], "1", {"GLLM_GEMM": "off"}),
             # the AVX2 kernel where the CPU would pick AVX-512 (what AVX2-only CPUs run)
             "gllm-avx2": ([], "1", {"GLLM_GEMM": "avx2"})}
NAMES = {"gllm": "gllm (prefix sharing, batch invariant)",
         "gllm-nosharing": "gllm, no prefix sharing",
         "gllm-noinv": "gllm, batch invariance off", "hf": "transformers generate",
         "gllm-bs16": "gllm, KV blocks of 16 tokens",
         "gllm-openblas": "gllm, batch invariant on OpenBLAS (GLLM_GEMM=off)",
         "gllm-avx2": "gllm, AVX2 kernel forced (GLLM_GEMM=avx2)",
         "llamacpp": "llama.cpp (llama-cpp-python, F32 GGUF)"}


def run_gllm(args, key, pfile, res_dir):
    extra, inv, env_extra = GLLM_RUNS[key]
    exe = os.path.join(args.build, "bench_infer")
    out = os.path.join(res_dir, f"infer_run_{key}.json")
    ids_out = os.path.join(res_dir, f"infer_ids_{key}.txt")
    cmd = [exe, args.model, pfile, out, "--threads", str(args.threads), "--ids", ids_out] + extra
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLLM_BATCH_INVARIANT=inv,
               **env_extra)
    with Lock(args.lock) as lk:
        load0 = os.getloadavg()[0]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{key}: {p.stderr}")
    print(f"{NAMES[key]}: {p.stdout.strip()}", flush=True)
    with open(out) as f:
        r = json.load(f)
    with open(ids_out) as f:
        r["ids"] = [list(map(int, l.split())) for l in f]
    os.remove(out)
    os.remove(ids_out)
    r["load_at_start"] = load0
    r["lock_wait_s"] = getattr(lk, "waited", 0.0)
    return r


def run_transformers(args, tok, prompts):
    torch.set_num_threads(args.threads)
    with Lock(args.lock) as lk:
        load0 = os.getloadavg()[0]
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        model.eval()
        wall, cpu, outs = run_hf(model, tok, prompts, args.hf_batch)
    n_gen = sum(p[1] for p in prompts)
    print(f"{NAMES['hf']}: {wall:.2f} s ({cpu:.1f} CPU s), {n_gen / wall:.1f} tok/s", flush=True)
    return {"wall_s": wall, "cpu_s": cpu, "output_tok_per_s": n_gen / wall,
            "generated_tokens": n_gen, "ids": outs, "load_at_start": load0,
            "lock_wait_s": getattr(lk, "waited", 0.0)}


def run_llamacpp(args, prompts, res_dir):
    """llama.cpp on the F32 GGUF gconvert writes from args.model (same weights, fp32)"""
    import llama_cpp
    import llamacpp_batch
    gguf = os.path.join(res_dir, "infer_llamacpp_f32.gguf")
    try:
        with Lock(args.lock) as lk:
            subprocess.run([os.path.join(args.build, "gconvert"), args.model, gguf, "--type",
                            "f32"], check=True, stdout=subprocess.DEVNULL)
            load0 = os.getloadavg()[0]
            wall, outs, info = llamacpp_batch.run(gguf, prompts, args.threads)
    finally:
        os.remove(gguf)
    n_gen = sum(p[1] for p in prompts)
    print(f"{NAMES['llamacpp']}: {wall:.2f} s ({info['cpu_s']:.1f} CPU s), "
          f"{n_gen / wall:.1f} tok/s, "
          f"llama-cpp-python {llama_cpp.__version__}, {info}", flush=True)
    return dict(info, wall_s=wall, output_tok_per_s=n_gen / wall,
                generated_tokens=n_gen, ids=outs, load_at_start=load0,
                lock_wait_s=getattr(lk, "waited", 0.0), version=llama_cpp.__version__)


def report(result, args, res_dir, stem):
    runs = result["runs"]
    n_prompt, n_gen, n = result["prompt_tokens"], result["generated_tokens"], result["prompts"]
    hf = runs.get("hf")
    lines = [f"# CPU batched inference: gllm engine vs transformers generate ({result['date']})",
             "",
             f"{result['model']}, {n} prompts ({result['per_kind']} chat instructions x 32 new "
             f"tokens, {result['per_kind']} sentiment classifications behind one shared 8-shot "
             f"prefix x 3 new tokens), {n_prompt} prompt tokens, {n_gen} generated tokens, greedy, "
             f"eos ignored; {result['threads']} threads for every system; transformers "
             f"{result['transformers_version']} / torch {result['torch']}, batches of "
             f"{result['hf_batch']} left-padded. Machine: {result['machine']}.",
             "",
             "| system | time to finish (s) | CPU s | output tok/s | speedup vs transformers "
             "(time) | prompt tokens computed | load avg at start |",
             "|---|---|---|---|---|---|---|"]
    for key in ("hf", "gllm", "gllm-nosharing", "gllm-noinv", "gllm-bs16", "gllm-openblas",
                "gllm-avx2", "llamacpp"):
        if key in ("llamacpp", "gllm-openblas", "gllm-avx2", "gllm-bs16") and key not in runs:
            continue
        if key not in runs:
            lines.append(f"| {NAMES[key]} | not run | | | | | |")
            continue
        r = runs[key]
        sp = f"{hf['wall_s'] / r['wall_s']:.2f}x" if hf else "-"
        computed = (f"{n_prompt} (+ padding)" if key == "hf"
                    else f"{r['prompt_tokens_computed']}" if key == "llamacpp"
                    else f"{r['prompt_tokens'] - r['cached_tokens']}")
        lines.append(f"| {NAMES[key]} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['output_tok_per_s']:.1f} | {sp} | {computed} | "
                     f"{r['load_at_start']:.2f} |")
    lines.append("")
    g = runs.get("gllm")
    if g and "gllm-nosharing" in runs:
        ns = runs["gllm-nosharing"]
        lines.append(f"- prefix sharing: {g['cached_tokens']} of {g['prompt_tokens']} "
                     f"prompt tokens "
                     f"served from shared blocks; {ns['wall_s'] / g['wall_s']:.2f}x faster than "
                     f"without sharing.")
    if g and "block_size" in g:
        line = f"- KV cache blocks of {g['block_size']} tokens (the CPU default)"
        if "gllm-bs16" in runs:
            b16 = runs["gllm-bs16"]
            line += (f"; with blocks of 16 the run computes "
                     f"{b16['prompt_tokens'] - b16['cached_tokens']} prompt tokens instead of "
                     f"{g['prompt_tokens'] - g['cached_tokens']} and takes {b16['wall_s']:.1f} s "
                     f"({b16['wall_s'] / g['wall_s']:.2f}x)")
        lines.append(line + ".")
    if g and "gllm-noinv" in runs:
        inv = runs["gllm-noinv"]
        lines.append(f"- batch invariance: off (GLLM_BATCH_INVARIANT=0) the run takes "
                     f"{inv['wall_s']:.1f} s vs {g['wall_s']:.1f} s on "
                     f"({(g['wall_s'] / inv['wall_s'] - 1) * 100:+.1f}% time for invariance).")
    if g and "gllm-openblas" in runs:
        ob = runs["gllm-openblas"]
        lines.append(f"- the row-invariant matmul on gllm's own sgemm (cpu_gemm.c, weights packed "
                     f"once) vs on OpenBLAS (GLLM_GEMM=off): {g['wall_s']:.1f} s vs "
                     f"{ob['wall_s']:.1f} s ({ob['wall_s'] / g['wall_s']:.2f}x).")
    for key, what in result.get("equal_to_gllm", {}).items():
        lines.append(f"- greedy ids equal to gllm's (sharing on, invariant) for {what} of {n} "
                     f"prompts: {NAMES[key]}" +
                     (" (fp32 both; batched left-padded transformers rounds differently, so "
                      "near-ties can flip)" if key == "hf" else ""))
    if "llamacpp" in runs:
        r = runs["llamacpp"]
        lines.append(f"- llama.cpp: llama-cpp-python {r['version']} built from its PyPI source "
                     f"package on this machine (CPU backend, GGML_NATIVE, no BLAS); the F32 GGUF "
                     f"gllm's gconvert exports; F32 KV cache, flash attention off; continuous "
                     f"batching of {r['slots']} sequences through llama_decode with batches of "
                     f"{r['n_batch']} tokens (ubatches of {r['n_ubatch']}), per-sequence KV "
                     f"streams of {r['ctx_per_seq']} cells, each kind's common prompt prefix "
                     f"computed once and copied (llama_memory_seq_cp); {r['steps']} decode calls; "
                     f"timed from the first decode, model load excluded (bench/llamacpp_batch.py).")
    lines.append(f"- conditions: each system ran alone, holding the shared CPU lock "
                 f"({args.lock or 'no lock'}) for its own run only; load averages at the start "
                 f"of each run are in the table (the 1-minute average still shows work that "
                 f"finished just before).")
    with open(os.path.join(res_dir, stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-cpu"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct"))
    ap.add_argument("--hf-batch", type=int, default=32)
    ap.add_argument("--per-kind", type=int, default=128,
                    help="prompts of each kind (128: the 256-prompt bench)")
    ap.add_argument("--runs", default="gllm,gllm-nosharing,gllm-noinv,gllm-bs16,hf",
                    help="comma-separated: gllm, gllm-nosharing, gllm-noinv, gllm-bs16, hf, "
                         "llamacpp "
                         "(llamacpp: optional, needs llama-cpp-python and build/gconvert)")
    ap.add_argument("--lock", default=None,
                    help="flock this file around each run (e.g. /work/cpu.lock on a shared "
                         "machine), so each run is one acquisition and is timed alone")
    ap.add_argument("--out", default="infer_cpu",
                    help="results stem in bench/results (STEM.json, STEM.md); runs already in "
                         "STEM.json for the same prompts are kept unless rerun")
    ap.add_argument("--machine", default=None, help="machine description for the report")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.model, "model.safetensors")):
        sys.exit(f"{args.model} missing: run python3 bench/make_smollm2_hf.py first")
    keys = [k for k in args.runs.split(",") if k]
    for k in keys:
        if k not in NAMES:
            sys.exit(f"--runs: unknown run {k} (known: {', '.join(NAMES)})")
    if any(k in GLLM_RUNS for k in keys) and not os.path.exists(
            os.path.join(args.build, "bench_infer")):
        sys.exit(f"{args.build}/bench_infer missing: build first")
    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = build_prompts(tok, args.per_kind)
    res_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(res_dir, exist_ok=True)
    pfile = os.path.join(res_dir, "infer_prompts.txt" if args.per_kind == 128
                         else f"infer_prompts_{args.per_kind}.txt")
    with open(pfile, "w") as f:
        for ids, n_new, _ in prompts:
            f.write(f"{n_new} " + " ".join(map(str, ids)) + "\n")
    n_gen = sum(p[1] for p in prompts)
    n_prompt = sum(len(p[0]) for p in prompts)
    print(f"{len(prompts)} prompts, {n_prompt} prompt tokens, {n_gen} tokens to generate, "
          f"{args.threads} threads", flush=True)
    jpath = os.path.join(res_dir, args.out + ".json")
    result = None
    if os.path.exists(jpath):
        with open(jpath) as f:
            result = json.load(f)
        if (result.get("prompt_tokens") != n_prompt or result.get("prompts") != len(prompts)
                or result.get("threads") != args.threads):
            result = None
    if result is None:
        result = {"runs": {}}
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    result.update({"model": "SmolLM2-135M-Instruct (fp32, dequantised from Q4_1 GGUF)",
                   "threads": args.threads, "prompts": len(prompts), "per_kind": args.per_kind,
                   "prompt_tokens": n_prompt, "generated_tokens": n_gen,
                   "hf_batch": args.hf_batch,
                   "machine": args.machine or f"{cpu}, {os.cpu_count()} cores",
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "torch": torch.__version__,
                   "transformers_version": __import__("transformers").__version__})
    ids = {k: v.pop("ids") for k, v in result["runs"].items() if "ids" in v}
    for key in keys:
        if key == "llamacpp":
            r = run_llamacpp(args, prompts, res_dir)
        else:
            r = run_transformers(args, tok, prompts) if key == "hf" else run_gllm(args, key, pfile,
                                                                               res_dir)
        ids[key] = r.pop("ids")
        r["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        result["runs"][key] = r
        # keep every finished run (and its ids) even if a later one fails
        with open(jpath, "w") as f:
            json.dump(dict(result, runs={k: dict(v, ids=ids.get(k)) for k, v in
                                         result["runs"].items()}), f)
    if "gllm" in ids:
        result["equal_to_gllm"] = {k: sum(a == b for a, b in zip(v, ids["gllm"]))
                                   for k, v in ids.items() if k != "gllm" and v is not None}
    with open(jpath, "w") as f:
        json.dump(dict(result, runs={k: dict(v, ids=ids.get(k)) for k, v in
                                     result["runs"].items()}), f)
    report(result, args, res_dir, args.out)


if __name__ == "__main__":
    main()
