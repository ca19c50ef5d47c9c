#!/usr/bin/env python3
"""CPU batched inference: gllm's engine (build/bench_infer) against transformers
`generate` (batched, left-padded) on the same model, prompts and threads.

Model: SmolLM2-135M-Instruct as an HF folder (bench/make_smollm2_hf.py makes
models/SmolLM2-135M-Instruct from the GGUF in ../shared). 256 prompts:
  - 128 short instructions through the chat template, 32 new tokens each;
  - 128 sentiment classifications behind one shared 8-shot prefix, 3 new tokens.
Greedy, eos ignored (every system generates exactly the same number of tokens).
Runs: transformers (batches of --hf-batch, prompts of one kind together, each
batch left-padded to its longest prompt), gllm with prefix sharing on and off,
and gllm with batch invariance off (GLLM_BATCH_INVARIANT=0). Writes
bench/results/infer_cpu.{json,md}.

Usage: python3 bench/infer_vs_transformers.py [--threads 2] [--build build-cpu]
"""
import argparse
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


def run_hf(model, tok, prompts, batch):
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
            with torch.no_grad():
                out = model.generate(ids, attention_mask=mask, do_sample=False,
                                     max_new_tokens=n_new, min_new_tokens=n_new,
                                     eos_token_id=None, pad_token_id=pad, temperature=None,
                                     top_p=None, top_k=None)
            for r, i in enumerate(sel):
                outs[i] = out[r, L:].tolist()
    return time.perf_counter() - t0, cpu_s() - c0, outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-cpu"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct"))
    ap.add_argument("--hf-batch", type=int, default=32)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--per-kind", type=int, default=128,
                    help="prompts of each kind (128: the 256-prompt bench)")
    ap.add_argument("--concurrent", action="store_true",
                    help="run the gllm configurations and transformers at the same time (a "
                         "loaded shared machine: compare CPU seconds)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.model, "model.safetensors")):
        sys.exit(f"{args.model} missing: run python3 bench/make_smollm2_hf.py first")
    exe = os.path.join(args.build, "bench_infer")
    if not os.path.exists(exe):
        sys.exit(f"{exe} missing: build first")
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = build_prompts(tok, args.per_kind)
    res_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(res_dir, exist_ok=True)
    pfile = os.path.join(res_dir, "infer_prompts.txt")
    with open(pfile, "w") as f:
        for ids, n_new, _ in prompts:
            f.write(f"{n_new} " + " ".join(map(str, ids)) + "\n")
    n_gen = sum(p[1] for p in prompts)
    n_prompt = sum(len(p[0]) for p in prompts)
    print(f"{len(prompts)} prompts, {n_prompt} prompt tokens, {n_gen} tokens to generate, "
          f"{args.threads} threads", flush=True)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    configs = [("gllm", [], "1"), ("gllm, no prefix sharing", ["--no-sharing"], "1"),
               ("gllm, batch invariance off", [], "0")]
    procs = []
    for k, (name, extra, inv) in enumerate(configs):
        out = os.path.join(res_dir, f"infer_run{k}.json")
        ids_out = os.path.join(res_dir, f"infer_ids{k}.txt")
        cmd = [exe, args.model, pfile, out, "--threads", str(args.threads), "--ids", ids_out] + extra
        p = subprocess.Popen(cmd, env=dict(env, GLLM_BATCH_INVARIANT=inv), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs.append((name, p, out, ids_out))
        if not args.concurrent:
            procs[-1] = (name, p, out, ids_out, p.communicate())
    hf = None
    hf_outs = None
    if not args.skip_hf:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        model.eval()
        wall, cpu, hf_outs = run_hf(model, tok, prompts, args.hf_batch)
        hf = {"wall_s": wall, "cpu_s": cpu, "output_tok_per_s": n_gen / wall}
        print(f"transformers: {wall:.2f} s ({cpu:.1f} CPU s), {n_gen / wall:.1f} tok/s", flush=True)
    runs = {}
    for item in procs:
        name, p, out, ids_out = item[:4]
        so, se = item[4] if len(item) > 4 else p.communicate()
        if p.returncode != 0:
            sys.exit(f"{name}: {se}")
        print(f"{name}: {so.strip()}", flush=True)
        with open(out) as f:
            runs[name] = json.load(f)
        with open(ids_out) as f:
            runs[name]["ids"] = [list(map(int, l.split())) for l in f]
        os.remove(out)
        os.remove(ids_out)
    if hf:
        hf["greedy_equal"] = sum(o == g for o, g in zip(hf_outs, runs["gllm"]["ids"]))

    same_inv = sum(a == b for a, b in zip(runs["gllm"]["ids"], runs["gllm, no prefix sharing"]["ids"]))
    for r in runs.values():
        r.pop("ids", None)
    result = {"model": "SmolLM2-135M-Instruct (fp32, dequantised from Q4_1 GGUF)",
              "threads": args.threads, "prompts": len(prompts), "prompt_tokens": n_prompt,
              "generated_tokens": n_gen, "hf_batch": args.hf_batch, "transformers": hf,
              "gllm": runs, "sharing_on_off_equal": same_inv,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "torch": torch.__version__}
    with open(os.path.join(res_dir, "infer_cpu.json"), "w") as f:
        json.dump(result, f, indent=1)
    g = runs["gllm"]
    lines = [f"# CPU batched inference: gllm engine vs transformers generate ({result['date']})",
             "",
             f"{result['model']}, {len(prompts)} prompts ({args.per_kind} chat instructions x 32 new tokens, "
             f"{args.per_kind} sentiment classifications behind one shared 8-shot prefix x 3 new tokens), "
             f"{n_prompt} prompt tokens, {n_gen} generated tokens, greedy, eos ignored; "
             f"{args.threads} threads for both; transformers {__import__('transformers').__version__} "
             f"/ torch {torch.__version__}, batches of {args.hf_batch} left-padded.",
             "",
             "| system | time to finish (s) | CPU s | output tok/s | output tok per CPU s | speedup vs transformers (time / CPU) | prompt tokens computed |",
             "|---|---|---|---|---|---|---|"]
    if hf:
        lines.append(f"| transformers generate | {hf['wall_s']:.1f} | {hf['cpu_s']:.1f} | "
                     f"{hf['output_tok_per_s']:.1f} | {n_gen / hf['cpu_s']:.2f} | 1.0x / 1.0x | "
                     f"{n_prompt} (+ padding) |")
    for name, r in runs.items():
        sp = (f"{hf['wall_s'] / r['wall_s']:.1f}x / {hf['cpu_s'] / r['cpu_s']:.1f}x" if hf
              else "-")
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['output_tok_per_s']:.1f} | {r['generated_tokens'] / r['cpu_s']:.2f} | "
                     f"{sp} | {r['prompt_tokens'] - r['cached_tokens']} |")
    ns = runs["gllm, no prefix sharing"]
    inv = runs["gllm, batch invariance off"]
    lines += ["",
              f"- prefix sharing: {g['cached_tokens']} of {g['prompt_tokens']} prompt tokens served "
              f"from shared blocks; {ns['wall_s'] / g['wall_s']:.2f}x faster than without sharing.",
              f"- batch invariance: with it off (GLLM_BATCH_INVARIANT=0) the run takes "
              f"{inv['wall_s']:.1f} s / {inv['cpu_s']:.1f} CPU s vs {g['wall_s']:.1f} s / "
              f"{g['cpu_s']:.1f} CPU s with it ({(g['cpu_s'] / inv['cpu_s'] - 1) * 100:+.1f}% CPU "
              f"for invariance).",
              f"- greedy ids equal with sharing on and off for {same_inv} of {len(prompts)} prompts."]
    if hf:
        lines.append(f"- greedy ids equal to transformers' for {hf['greedy_equal']} of "
                     f"{len(prompts)} prompts (fp32 both; batched, left-padded transformers "
                     f"rounds differently, so near-ties can flip).")
    lines.append(f"- conditions: {'all runs concurrently' if args.concurrent else 'runs one after another'}"
                 f" on a 2-core machine shared with other jobs (load average "
                 f"{os.getloadavg()[0]:.1f} at the end), so wall times are inflated; CPU seconds "
                 f"(all threads, spin-waits included) are the steadier comparison.")
    with open(os.path.join(res_dir, "infer_cpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
