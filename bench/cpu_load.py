#!/usr/bin/env python3
"""gllm's CPU engine against PyTorch on an idle machine and under a controlled
competing load (one busy process per core, started and stopped here), in the
same run: forward+backward training steps (stories260K, llama-6m, gpt2-14m)
and greedy decoding of SmolLM2-135M-Instruct (64 new tokens, eos ignored).

For each workload and repetition, one unit runs idle then loaded, each time
new gllm, the baseline gllm build (--old, optional) and PyTorch one after the
other (alternating pairs; medians over --reps). With --lock, every unit holds
that file's flock (the load runs only inside it), so each unit ran alone.

Writes bench/results/cpu_load_<date>_<HHMM>.md with --save: the idle table, the
loaded table and the slowdown (loaded time / idle time) of each side.

usage: bench/cpu_load.py [--build build-cpu] [--old OLD_BUILD] [--threads 2]
                         [--reps 3] [--lock /path/cpu.lock] [--only NAME] [--save]
Needs torch + transformers; ../shared for stories260K and the SmolLM2 GGUF.
"""
import argparse
import contextlib
import datetime
import fcntl
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "assets", "models")
GGUF_DIR = os.path.join(SHARED, "SmolLM2-135M-Instruct-GGUF")
GGUF = os.path.join(GGUF_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf")
HF_SMOL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
PROMPT = "Write a short story about a robot who learns to paint."
NEW_TOKENS = 64


# ---------------------------------------------------------------- the load
@contextlib.contextmanager
def competing_load(n):
    """n busy processes (one per core), killed on exit."""
    procs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(n)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()


@contextlib.contextmanager
def cpu_lock(path):
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- runners
def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")


def env_threads(threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop("OPENBLAS_NUM_THREADS", None)
    return env


def gllm_train(build, model, B, T, threads):
    r = run_json([os.path.join(build, "bench_train_cpu"), model, str(B), str(T), str(threads),
                  "10", "2"], env_threads(threads))
    return r["tokens_per_s"]


def torch_train(model, B, T, threads):
    r = run_json([sys.executable, os.path.join(ROOT, "bench", "torch_cpu_fwdbwd.py"), "--model",
                  model, "--batch", str(B), "--seq", str(T), "--threads", str(threads),
                  "--steps", "10", "--warmup", "2"], env_threads(threads))
    return r["tokens_per_s"]


def gllm_decode(build, threads):
    cmd = [os.path.join(build, "gchat"), GGUF, "--max-new", str(NEW_TOKENS), PROMPT]
    out = subprocess.run(cmd, env=env_threads(threads), capture_output=True, text=True)
    m = re.search(r"(\d+) generated in ([0-9.]+) s", out.stdout)
    if out.returncode or not m:
        raise RuntimeError(f"gchat failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    return int(m.group(1)) / float(m.group(2))


def torch_decode(threads):
    r = run_json([sys.executable, os.path.abspath(__file__), "--torch-decode", "--threads",
                  str(threads)], env_threads(threads))
    return r["tokens_per_s"]


def torch_decode_main(threads):
    """The PyTorch side of the decode bench (run in its own process)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(HF_SMOL)
    model = AutoModelForCausalLM.from_pretrained(HF_SMOL, dtype=torch.float32)
    model.eval()
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                   add_generation_prompt=True)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, pad_token_id=tok.eos_token_id)
        dt = time.perf_counter() - t0
    n = out.shape[1] - ids.shape[1]
    print(json.dumps({"impl": "pytorch", "tokens": n, "seconds": dt, "tokens_per_s": n / dt}))


# ---------------------------------------------------------------- the study
def workloads(tmp, only):
    w = []
    stories = os.path.join(SHARED, "stories260K-hf")
    if os.path.isdir(stories):
        w.append(("stories260K", "train", stories, 8, 256))
    for shape in ("llama-6m", "gpt2-14m"):
        d = os.path.join(tmp, shape)
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_bench_model.py"), d,
                        shape], check=True, stdout=subprocess.DEVNULL)
        w.append((shape, "train", d, 4, 256))
    if os.path.exists(GGUF):
        if not os.path.exists(os.path.join(HF_SMOL, "model.safetensors")):
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_smollm2_hf.py")],
                           check=True, stdout=subprocess.DEVNULL)
        w.append(("SmolLM2-135M decode", "decode", GGUF_DIR, 1, NEW_TOKENS))
    return [x for x in w if not only or x[0] in only]


def one_side(kind, side, build, entry, threads):
    name, _, model, B, T = entry
    if side == "pytorch":
        return torch_train(model, B, T, threads) if kind == "train" else torch_decode(threads)
    return gllm_train(build, model, B, T, threads) if kind == "train" else gllm_decode(build, threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-cpu"))
    ap.add_argument("--old", help="build folder of the baseline gllm (e.g. the previous main)")
    ap.add_argument("--old-label", default="old gllm")
    ap.add_argument("--old-loaded-reps", type=int, default=1,
                    help="repetitions that run the baseline under load too (it is slow there)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lock", help="flock this file around each unit (idle + loaded runs)")
    ap.add_argument("--only", nargs="*", help="workload names to run")
    ap.add_argument("--save", action="store_true")
    ap.add_argument("--torch-decode", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_decode:
        torch_decode_main(args.threads)
        return 0
    n_load = len(os.sched_getaffinity(0))
    sides = ["gllm"] + (["old"] if args.old else []) + ["pytorch"]
    builds = {"gllm": args.build, "old": args.old, "pytorch": None}
    tmp = tempfile.mkdtemp(prefix="gllm_cpu_load_")
    results = {}  # (workload, cond, side) -> [tokens/s]
    started = datetime.datetime.now(datetime.timezone.utc)
    wl = workloads(tmp, args.only)
    for rep in range(args.reps):
        for entry in wl:
            name, kind = entry[0], entry[1]
            with cpu_lock(args.lock):
                for cond in ("idle", "loaded"):
                    ctx = competing_load(n_load) if cond == "loaded" else contextlib.nullcontext()
                    with ctx:
                        for side in sides:
                            if side == "old" and cond == "loaded" and rep >= args.old_loaded_reps:
                                continue
                            v = one_side(kind, side, builds[side], entry, args.threads)
                            results.setdefault((name, cond, side), []).append(v)
                            print(f"rep {rep + 1}/{args.reps} {name} {cond} {side}: {v:.1f} tok/s",
                                  flush=True)
            if args.save:  # after every unit: a partial table survives an interrupted run
                save(args, wl, sides, results, started, n_load, f"{rep + 1} of {args.reps}")
    md = report(args, wl, sides, results, started, n_load)
    print(md)
    if args.save:
        save(args, wl, sides, results, started, n_load, None)
    return 0


def save(args, wl, sides, results, started, n_load, partial):
    done = [e for e in wl if all((e[0], c, s) in results for c in ("idle", "loaded")
                                 for s in ("gllm", "pytorch"))]
    md = report(args, done, sides, results, started, n_load)
    if partial:
        md += f"\nPartial: written after repetition {partial} of this workload's unit.\n"
    # date and time: a second run the same day must not overwrite the first one's file
    path = os.path.join(ROOT, "bench", "results", f"cpu_load_{started:%Y-%m-%d_%H%M}.md")
    with open(path, "w") as f:
        f.write(md)
    with open(path.replace(".md", ".json"), "w") as f:
        json.dump({f"{k[0]}|{k[1]}|{k[2]}": v for k, v in results.items()}, f, indent=1)
    print(f"wrote {path}", flush=True)


def report(args, wl, sides, results, started, n_load):
    import platform
    import torch
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    label = {"gllm": f"gllm {rev}", "old": args.old_label, "pytorch": "PyTorch"}
    med = {k: statistics.median(v) for k, v in results.items()}
    L = [f"# gllm vs PyTorch on the CPU, idle and under a competing load ({args.threads} threads)",
         "",
         f"{cpu}, {os.cpu_count()} cores; {started:%Y-%m-%dT%H:%MZ}; PyTorch {torch.__version__}. "
         f"Produced by bench/cpu_load.py. Load: {n_load} busy processes (`while :; do :; done`), "
         "one per core, started before and killed after each loaded set of runs.",
         f"Median of {args.reps} repetitions; each repetition of a workload ran idle, then loaded, "
         "each side one after the other (the baseline build runs loaded in the first "
         f"{args.old_loaded_reps} repetition(s) only: it is slow there)"
         + (", holding the shared CPU lock (no other job of ours on the machine)." if args.lock
            else "."),
         "Training: tokens/s of forward+backward (median step of 10 after 2 warm-up steps, "
         "random batches). Decode: SmolLM2-135M-Instruct greedy, 64 new tokens, eos ignored "
         "(gllm: gchat on the Q4_1 GGUF dequantised to fp32; PyTorch: transformers `generate` "
         "on the same weights in fp32), tokens/s of the generation call.",
         ""]
    for cond in ("idle", "loaded"):
        L.append(f"## {cond.capitalize()}")
        L.append("")
        head = "| workload | " + " | ".join(f"{label[s]} tok/s" for s in sides) + \
            " | gllm / PyTorch | per run (gllm, PyTorch) |"
        L.append(head)
        L.append("|" + "---|" * (len(sides) + 3))
        for entry in wl:
            n = entry[0]
            cells = [f"{med[(n, cond, s)]:.1f}" if (n, cond, s) in med else "-" for s in sides]
            ratio = med[(n, cond, "gllm")] / med[(n, cond, "pytorch")]
            runs = "; ".join(f"{a:.0f}, {b:.0f}" for a, b in
                             zip(results[(n, cond, "gllm")], results[(n, cond, "pytorch")]))
            L.append(f"| {n} | " + " | ".join(cells) + f" | {ratio:.2f} | {runs} |")
        L.append("")
    L.append("## Slowdown under load (idle tokens/s / loaded tokens/s = loaded time / idle time)")
    L.append("")
    cols = " | ".join(f"{label[s]}" for s in sides)
    L.append(f"| workload | {cols} | gllm no worse than PyTorch | gllm idle vs "
             f"{label['old'] if 'old' in sides else 'baseline'} |")
    L.append("|" + "---|" * (len(sides) + 3))
    for entry in wl:
        n = entry[0]
        sl = {s: med[(n, "idle", s)] / med[(n, "loaded", s)] for s in sides
              if (n, "loaded", s) in med}
        ok = "yes" if sl["gllm"] <= sl["pytorch"] else "no"
        idle_vs = (f"{med[(n, 'idle', 'gllm')] / med[(n, 'idle', 'old')]:.2f}x"
                   if "old" in sides else "-")
        L.append(f"| {n} | " + " | ".join(f"{sl[s]:.2f}x" if s in sl else "-" for s in sides) +
                 f" | {ok} | {idle_vs} |")
    L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
