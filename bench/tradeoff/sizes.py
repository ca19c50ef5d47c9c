#!/usr/bin/env python3
"""Resource intensity by model size (issue 12, item 2): for each model of a sweep, from the
smallest up, peak memory and time per token of full fine-tuning (gtrain: forward, backward and
the AdamW step) against inference (prefill and decode through the engine, bench_infer), beside
the analytic model of bench/tradeoff/cost.py; then the largest model each approach fits on one
device and, with ZeRO-1 (AdamW state sharded over N ranks), on N devices.

    python3 bench/tradeoff/sizes.py [--config bench/tradeoff/sizes_cpu.json] [--bin build-cpu]
        [--out-dir bench/results] [--lock /work/cpu.lock] [--only NAME,...] [--budget SECONDS]

Models: a config entry gives either "path" (an HF folder or a .gguf file; "$SHARED" is the shared
assets folder, ../shared by default or $GLLM_SHARED_DIR) or "random" (a shape name of SHAPES: an HF
folder with config.json, random safetensors and a byte-level tokenizer.json is written on the fly
into a temporary folder, never kept; random weights are for this cost sweep only).

Measurements, per model (with --lock, each model's preparation and measurements are one unit of
work under the shared CPU lock, so that its timings are quiet-machine timings):
  train    gtrain, `train.steps` optimizer steps of batch_size x seq_len packed tokens; time per
           token = the median step time (steps after the first `train.warmup`) / tokens per step;
           peak memory = gtrain's own peak_mem_mib (the backend's buffers: device memory on a
           GPU, the CPU backend's allocations on the CPU) and the process's maximum resident set
           (getrusage of the child, what /usr/bin/time -v prints).
  zero1    the same with gtrain --ranks R and "zero1": true (CPU only, where ranks are processes
           sharing memory): each rank's peak memory and optimizer bytes.
  prefill  bench_infer, `infer.requests` prompts of `infer.prompt_tokens` random ids, one token
           each: prompt tokens / wall seconds (the first token of each comes from the prefill).
  decode   the same prompts generating 1 + `infer.decode_tokens` tokens: decode tokens per second
           = requests x decode_tokens / (wall - prefill wall), at batch = requests and at batch 1.
           The KV budget is set to what the requests need (--kv-bytes), so the engine's peak_bytes
           is weights + KV + workspace.
Every figure is tagged measured or computed, with the device and the UTC time (cost.figure).

Outputs: <out-dir>/sizes_<device>_<date>.{json,csv,md,png}. The Markdown is a section the
trade-off report includes; the PNG has memory vs parameters (measured points over the analytic
lines) and time per token (train vs prefill vs decode).
"""

import argparse
import fcntl
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import cost  # noqa: E402
import sizes_report  # noqa: E402

MIB = 1024.0 * 1024.0
GIB = 1024.0 * MIB

# Shapes of the random-weight models (Hugging Face config.json). llama-6m and gpt2-14m are the
# CPU bench shapes of bench/make_bench_model.py; the others are the published shapes of GPT-2
# (small, medium, large, XL), Llama 3.2 1B and 3B, Llama 3.1 8B; llama-13b/70b/405b are only
# computed (the "fits" table). tiny-llama is the ctest's.
SHAPES = {
    "tiny-llama": {"model_type": "llama", "vocab_size": 512, "hidden_size": 64,
                   "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "max_position_embeddings": 512,
                   "tie_word_embeddings": True},
    "llama-6m": {"model_type": "llama", "vocab_size": 8192, "hidden_size": 256,
                 "intermediate_size": 688, "num_hidden_layers": 6, "num_attention_heads": 8,
                 "num_key_value_heads": 4, "max_position_embeddings": 1024,
                 "tie_word_embeddings": True},
    "gpt2-14m": {"model_type": "gpt2", "vocab_size": 8192, "n_embd": 384, "n_layer": 6,
                 "n_head": 6, "n_positions": 1024},
    "gpt2-124m": {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12,
                  "n_head": 12, "n_positions": 1024},
    "gpt2-350m": {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 1024, "n_layer": 24,
                  "n_head": 16, "n_positions": 1024},
    "gpt2-774m": {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 1280, "n_layer": 36,
                  "n_head": 20, "n_positions": 1024},
    "gpt2-1.5b": {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 1600, "n_layer": 48,
                  "n_head": 25, "n_positions": 1024},
    "llama-1b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
                 "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "max_position_embeddings": 4096,
                 "rope_theta": 500000.0, "tie_word_embeddings": True},
    "llama-3b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 3072,
                 "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
                 "num_key_value_heads": 8, "max_position_embeddings": 4096,
                 "rope_theta": 500000.0, "tie_word_embeddings": True},
    "llama-8b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
                 "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "max_position_embeddings": 4096,
                 "rope_theta": 500000.0, "tie_word_embeddings": False},
    "llama-13b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 5120,
                  "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
                  "num_key_value_heads": 40, "max_position_embeddings": 4096,
                  "tie_word_embeddings": False},
    "llama-70b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 8192,
                  "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
                  "num_key_value_heads": 8, "max_position_embeddings": 4096,
                  "tie_word_embeddings": False},
    "llama-405b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 16384,
                   "intermediate_size": 53248, "num_hidden_layers": 126,
                   "num_attention_heads": 128, "num_key_value_heads": 8,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False},
}

# What gllm keeps per parameter and per activation on each backend (src/model/model.c, optim.c,
# step.c): the CPU computes in fp32 (weights 4 + gradients 4 + AdamW m 4 + v 4 = 16 B/param);
# the CUDA backend keeps bf16 weights, fp32 gradients and fp32 master weights, m and v
# (2 + 4 + 4 + 4 + 4 = 18 B/param). Under ZeRO-1 the optimizer state (m, v and the master copy)
# is split over the ranks; weights and gradients are not. Inference holds the weights and the
# KV cache in the compute dtype.
PRECISION = {
    "cpu": {"replicated": 8, "sharded": 8, "act": 4, "weights": 4, "kv": 4,
            "note": "fp32: weights 4 + grads 4 (replicated), AdamW m 4 + v 4 (sharded by ZeRO-1)"},
    "cuda": {"replicated": 6, "sharded": 12, "act": 2, "weights": 2, "kv": 2,
             "note": "bf16 weights 2 + fp32 grads 4 (replicated), fp32 master 4 + m 4 + v 4 "
                     "(sharded by ZeRO-1)"},
}

# --------------------------------------------------------------------------- random models


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (byte-level BPE vocabularies)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def write_byte_tokenizer(folder):
    """A byte-level BPE tokenizer.json with the 256 byte tokens and no merges: one token per
    byte of text, ids 0..255, valid for any vocabulary of at least 256."""
    vocab = {ch: b for b, ch in sorted(bytes_to_unicode().items())}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": False},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                       "use_regex": False},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False}, f)


def hf_tensors(cfg):
    """(name, shape, kind) of every tensor of an HF llama or gpt2 checkpoint with this config;
    kind is "matrix" (random), "norm" (ones) or "zero" (biases)."""
    out = []
    if cfg["model_type"] == "gpt2":
        C, V, P, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"], cfg["n_layer"]
        F = cfg.get("n_inner") or 4 * C
        out += [("transformer.wte.weight", (V, C), "matrix"),
                ("transformer.wpe.weight", (P, C), "matrix")]
        for i in range(L):
            p = "transformer.h.%d." % i
            out += [(p + "ln_1.weight", (C,), "norm"), (p + "ln_1.bias", (C,), "zero"),
                    (p + "attn.c_attn.weight", (C, 3 * C), "matrix"),
                    (p + "attn.c_attn.bias", (3 * C,), "zero"),
                    (p + "attn.c_proj.weight", (C, C), "matrix"),
                    (p + "attn.c_proj.bias", (C,), "zero"),
                    (p + "ln_2.weight", (C,), "norm"), (p + "ln_2.bias", (C,), "zero"),
                    (p + "mlp.c_fc.weight", (C, F), "matrix"), (p + "mlp.c_fc.bias", (F,), "zero"),
                    (p + "mlp.c_proj.weight", (F, C), "matrix"),
                    (p + "mlp.c_proj.bias", (C,), "zero")]
        out += [("transformer.ln_f.weight", (C,), "norm"), ("transformer.ln_f.bias", (C,), "zero")]
        return out
    C, V, L, I = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"], \
        cfg["intermediate_size"]
    H = cfg["num_attention_heads"]
    D = cfg.get("head_dim") or C // H
    KV = cfg.get("num_key_value_heads", H)
    out.append(("model.embed_tokens.weight", (V, C), "matrix"))
    for i in range(L):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", (C,), "norm"),
                (p + "self_attn.q_proj.weight", (H * D, C), "matrix"),
                (p + "self_attn.k_proj.weight", (KV * D, C), "matrix"),
                (p + "self_attn.v_proj.weight", (KV * D, C), "matrix"),
                (p + "self_attn.o_proj.weight", (C, H * D), "matrix"),
                (p + "post_attention_layernorm.weight", (C,), "norm"),
                (p + "mlp.gate_proj.weight", (I, C), "matrix"),
                (p + "mlp.up_proj.weight", (I, C), "matrix"),
                (p + "mlp.down_proj.weight", (C, I), "matrix")]
    out.append(("model.norm.weight", (C,), "norm"))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (V, C), "matrix"))
    return out


def write_random_model(folder, shape_name, dtype="F32", seed=0):
    """An HF model folder of the named shape with random weights (normal, std 0.02, drawn once
    into a pool of 2^20 values that every matrix reads from a random offset: the content does not
    change the cost being measured, and an 8B model is written in seconds), ones for norm
    weights, zeros for biases, and the byte-level tokenizer. dtype: F32 or BF16."""
    import numpy as np
    cfg = dict(SHAPES[shape_name])
    cfg["architectures"] = ["GPT2LMHeadModel" if cfg["model_type"] == "gpt2" else
                            "LlamaForCausalLM"]
    cfg["torch_dtype"] = "float32" if dtype == "F32" else "bfloat16"
    if cfg["model_type"] == "llama":
        cfg.setdefault("rms_norm_eps", 1e-5)
        cfg.setdefault("hidden_act", "silu")
        cfg.setdefault("rope_theta", 10000.0)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    rng = np.random.default_rng(seed)
    pool32 = (rng.standard_normal(1 << 20) * 0.02).astype(np.float32)
    esz = 4 if dtype == "F32" else 2

    def encode(a):
        if dtype == "F32":
            return a.astype("<f4").tobytes()
        return (a.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()

    pool = encode(np.concatenate([pool32, pool32]))  # so that any window of 2^20 is contiguous
    ones, zeros = encode(np.ones(1 << 16, np.float32)), bytes(esz << 16)
    tensors = hf_tensors(cfg)
    header, off = {}, 0
    for name, shp, _ in tensors:
        n = math.prod(shp) * esz
        header[name] = {"dtype": dtype, "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    path = os.path.join(folder, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shp, kind in tensors:
            left = math.prod(shp) * esz
            if kind == "matrix":
                start = int(rng.integers(0, 1 << 20)) * esz
                chunk = pool[start:start + (esz << 20)]
            else:
                chunk = ones if kind == "norm" else zeros
            while left > 0:
                k = min(left, len(chunk))
                f.write(chunk[:k])
                left -= k
    write_byte_tokenizer(folder)
    return sum(math.prod(s) for _, s, _ in tensors)


def count_params(path):
    """Stored parameters of an HF folder (its safetensors headers) or a .gguf file."""
    if path.endswith(".gguf"):
        return cost.load_shape(path).n_params
    total = 0
    for fn in sorted(os.listdir(path)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(path, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        total += sum(math.prod(v["shape"]) for k, v in hdr.items() if k != "__metadata__")
    return total


def model_shape(path, name):
    """cost.Shape of a model, with the parameter count read from its file (GPT-2's position
    embeddings and biases are not in cost.count_params)."""
    shape = cost.load_shape(path)
    shape.name = name
    shape.n_params = count_params(path)
    return shape


# --------------------------------------------------------------------------- running


def gtrain_inputs(d, model, backend, B, T, steps, ranks=1):
    """Writes data.jsonl (random words: ~6 characters per token of T, so that every packed row is
    full for any tokenizer of the sweep) and train.json into folder d for `steps` steps of B rows of
    T tokens per rank, and returns gtrain's arguments (run in d; rank count > 1: ZeRO-1)."""
    os.makedirs(d, exist_ok=True)
    rng = random.Random(1234)
    docs = B * ranks * (steps + 1) + 8
    with open(os.path.join(d, "data.jsonl"), "w") as f:
        for _ in range(docs):
            f.write(json.dumps({"text": words_text(rng, 6 * T)}) + "\n")
    conf = {"model": os.path.abspath(model), "data": "data.jsonl", "out_dir": "run",
            "backend": backend, "seq_len": T, "batch_size": B, "max_steps": steps,
            "lr": 1e-5, "warmup_steps": 0, "seed": 1234, "packing": True,
            "max_grad_norm": 1.0, "log_every": 1000000}
    if ranks > 1:
        conf["zero1"] = True
    with open(os.path.join(d, "train.json"), "w") as f:
        json.dump(conf, f)
    args = ["--overwrite"]
    args += ["--ranks", str(ranks)] if ranks > 1 else ["--backend", backend]
    return args + ["train.json"]


def gtrain_steps(d, warm):
    """The finished gtrain run in d: (median seconds per step and median tokens per step over the
    steps after the first `warm`, those step times, the metrics rows of steps, summary.json)."""
    rows = [json.loads(l) for l in open(os.path.join(d, "run", "metrics.jsonl"))]
    st = [r for r in rows if "loss" in r and "step" in r and "elapsed_s" in r]
    summ = json.load(open(os.path.join(d, "run", "summary.json")))
    per_step, tok_step = [], []
    prev_e, prev_t = 0.0, 0
    for r in st:
        if r["step"] > warm:
            per_step.append(r["elapsed_s"] - prev_e)
            tok_step.append(r["tokens"] - prev_t)
        prev_e, prev_t = r["elapsed_s"], r["tokens"]
    return statistics.median(per_step), statistics.median(tok_step), per_step, st, summ


class Lock:
    """The shared CPU lock (flock on a file), held for one unit of work; a no-op without a path."""

    def __init__(self, path):
        self.path, self.f = path, None

    def __enter__(self):
        if self.path:
            self.f = open(self.path, "a")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.f:
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()
            self.f = None


TIME = "/usr/bin/time"
_child = []  # the running measurement, for the SIGTERM handler


def _on_term(signum, frame):
    """Killed (the GPU check's step timeout): end the running measurement too (it runs in its own
    session, so the signal to this process group does not reach it), then unwind, so that the
    temporary models are removed; the results so far are already in --partial."""
    for p in _child:
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
    raise SystemExit(128 + signum)


def run_child(cmd, env, timeout, cwd=None):
    """Run cmd; returns (rc, wall seconds, peak resident MiB, output). The peak is what
    /usr/bin/time -v calls "Maximum resident set size" (%M), taken through /usr/bin/time when
    the machine has it (None otherwise): the child of a small process, so that the RSS of this
    Python process, which a forked child would inherit into its ru_maxrss, does not count; with
    --ranks it includes the worker processes gtrain waits for. rc 124 = killed at the timeout."""
    t0 = time.monotonic()
    rss_file = None
    if os.access(TIME, os.X_OK):
        fd, rss_file = tempfile.mkstemp(prefix="gllm_sizes_rss_")
        os.close(fd)
        cmd = [TIME, "-f", "%M", "-o", rss_file] + list(cmd)
    try:
        with tempfile.TemporaryFile() as out:
            p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            _child.append(p)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
                rc = 124
            finally:
                _child.remove(p)
            wall = time.monotonic() - t0
            out.seek(0)
            text = out.read().decode(errors="replace")
        rss = None
        if rss_file:
            lines = [l for l in open(rss_file).read().split() if l.isdigit()]
            rss = int(lines[-1]) / 1024.0 if lines else None
        return rc, wall, rss, text
    finally:
        if rss_file:
            os.unlink(rss_file)


def words_text(rng, n_chars):
    """Pseudo-English text of about n_chars characters (the content does not change the cost)."""
    syll = ["ka", "to", "ri", "ne", "sa", "lo", "mi", "du", "pe", "an", "ber", "ist", "on", "the"]
    words, n = [], 0
    while n < n_chars:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(1, 3)))
        words.append(w)
        n += len(w) + 1
    return " ".join(words)


class Sweep:
    def __init__(self, cfg, args):
        self.cfg, self.args = cfg, args
        self.backend = cfg.get("backend", "cpu")
        self.prec = PRECISION["cuda" if self.backend.startswith("cuda") else "cpu"]
        self.bin = args.bin
        self.lock = args.lock
        self.threads = int(cfg.get("threads", 0)) or os.cpu_count()
        self.device = self.describe_device()
        self.env = dict(os.environ)
        self.env["OMP_NUM_THREADS"] = str(self.threads)
        if self.backend.startswith("cuda"):
            self.env["GLLM_BENCH_BACKEND"] = self.backend
        self.t_start = time.monotonic()
        self.loads = []

    # ---------------------------------------------------------------- device
    def describe_device(self):
        c = self.cfg
        if self.backend.startswith("cuda"):
            try:
                q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                    "--format=csv,noheader,nounits"], capture_output=True,
                                   text=True, timeout=30).stdout.strip().splitlines()[0]
                name, mem, drv = [x.strip() for x in q.split(",")]
                return {"name": "%s (driver %s)" % (name, drv), "label": c.get("device_label") or
                        re.sub(r"[^a-z0-9]+", "", name.lower().replace("nvidia", ""))[:16],
                        "memory_bytes": float(mem) * MIB, "memory_source": "nvidia-smi memory.total"}
            except (OSError, IndexError, ValueError, subprocess.SubprocessError):
                return {"name": "no GPU found", "label": c.get("device_label") or "gpu",
                        "memory_bytes": float(c.get("device_memory_gib", 0)) * GIB,
                        "memory_source": "config device_memory_gib"}
        model = "cpu"
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
            mem = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo")
                       if l.startswith("MemTotal"))
        except (OSError, StopIteration):
            mem = 0
        return {"name": "%s, %d cores used (host %s)" % (model, self.threads, socket.gethostname()),
                "label": c.get("device_label") or "cpu", "memory_bytes": float(mem),
                "memory_source": "/proc/meminfo MemTotal"}

    def fig(self, value, unit, kind, note=""):
        return cost.figure(value, unit, kind, self.device["name"], note=note)

    def rate(self, m, prefix, tokens, seconds, note, time_note=""):
        """A measured throughput both ways: PREFIX + tokens_per_s and PREFIX + time_per_token_s."""
        m[prefix + "tokens_per_s"] = self.fig(tokens / seconds, "tokens/s", "measured", note)
        m[prefix + "time_per_token_s"] = self.fig(seconds / tokens, "s/token", "measured", time_note)

    def rss(self, m, maxrss, what, own, own_note):
        """Host memory two ways: /usr/bin/time's maximum RSS of the process(es) and the program's
        own report."""
        m["max_rss_mib"] = self.fig(maxrss, "MiB", "measured",
                                    "/usr/bin/time -v Maximum resident set size of %s" % what
                                    if maxrss else "no /usr/bin/time here")
        m["own_rss_mib"] = self.fig(own, "MiB", "measured", own_note)

    def time_left(self):
        b = self.args.budget
        return math.inf if not b else b - (time.monotonic() - self.t_start)

    def unit(self, what):
        """A unit of work under the lock; notes the load average around it (quiet or not)."""
        sweep = self

        class U:
            def __enter__(self):
                self.l = Lock(sweep.lock).__enter__()
                self.t0 = time.time()
                self.load0 = os.getloadavg()[0]
                return self

            def __exit__(self, *exc):
                sweep.loads.append({"unit": what, "s": round(time.time() - self.t0, 1),
                                    "load1_before": round(self.load0, 2),
                                    "load1_after": round(os.getloadavg()[0], 2)})
                self.l.__exit__(*exc)
        return U()

    # ---------------------------------------------------------------- training
    def settings(self, entry, what):
        """The config's train/infer settings with the model entry's own overrides."""
        return dict(self.cfg[what], **entry.get(what, {}))

    def train(self, entry, path, shape, work, ranks=1):
        t = self.settings(entry, "train")
        B, T, steps, warm = int(t["batch_size"]), int(t["seq_len"]), int(t["steps"]), \
            int(t.get("warmup", 1))
        if steps - warm < 1:
            raise SystemExit("sizes: train.steps must exceed train.warmup")
        d = os.path.join(work, "train_r%d" % ranks)
        cmd = [os.path.join(self.bin, "gtrain")] + gtrain_inputs(d, path, self.backend, B, T, steps,
                                                                  ranks)
        env = dict(self.env)
        if ranks > 1:  # the ranks share the cores
            env["OMP_NUM_THREADS"] = str(max(1, self.threads // ranks))
        timeout = min(float(t.get("timeout_s", 600)), max(10.0, self.time_left()))
        rc, wall, maxrss, out = run_child(cmd, env, timeout, cwd=d)
        res = {"settings": {"batch_size": B, "seq_len": T, "steps": steps, "warmup_steps": warm,
                            "ranks": ranks, "zero1": ranks > 1, "backend": self.backend,
                            "threads": self.threads, "wall_s": round(wall, 2)}}
        if rc != 0:
            res["status"] = self.failure("gtrain", rc, timeout, out)
            shutil.rmtree(d, ignore_errors=True)
            return res
        step_s, toks, per_step, st, summ = gtrain_steps(d, warm)
        shutil.rmtree(d, ignore_errors=True)
        m = {
            "step_s": self.fig(step_s, "s", "measured",
                               "median of %d steps after %d warm-up step(s), gtrain metrics.jsonl "
                               "elapsed_s differences" % (len(per_step), warm)),
            "tokens_per_step": self.fig(toks, "tokens", "measured",
                                        "all ranks; packed rows, every token trained"),
            "peak_backend_mib": self.fig(max(summ["peak_mem_mib_per_rank"]), "MiB", "measured",
                                         "gtrain summary.json peak_mem_mib_per_rank, largest: the "
                                         "backend's buffers (%s)" % (
                                             "device memory" if self.backend != "cpu"
                                             else "CPU backend allocations")),
            "optimizer_bytes_per_rank": self.fig(summ["optimizer_bytes_per_rank"], "bytes",
                                                 "measured", "gtrain summary.json"),
            "gllm_flops_per_token": self.fig(summ["train_flops_per_token"], "FLOP/token",
                                             "computed", "gtrain's own count (summary.json "
                                             "train_flops_per_token)"),
            "parameters": self.fig(summ["parameters"], "parameters", "measured",
                                   "gtrain summary.json"),
        }
        self.rate(m, "", toks, step_s, "", "forward + backward + AdamW step")
        self.rss(m, maxrss, "gtrain%s: host memory, including the mapped model file, tokenizer "
                 "and data" % (" (the largest of its processes)" if ranks > 1 else ""),
                 max(r.get("rss_mib", 0) for r in st),
                 "gtrain's own report: metrics.jsonl rss_mib (resident memory of rank 0 after "
                 "each step), largest")
        if ranks > 1:
            m["peak_backend_mib_per_rank"] = self.fig(summ["peak_mem_mib_per_rank"], "MiB",
                                                      "measured", "gtrain summary.json")
        res["measured"] = m
        res["status"] = "ok"
        res["computed"] = self.train_analytic(shape, B, T, ranks)
        return res

    def train_analytic(self, shape, B, T, ranks):
        p = self.prec
        batch_tokens = B * T
        mem = cost.train_memory_bytes_zero1(shape, batch_tokens, ranks, p["replicated"],
                                            p["sharded"], p["act"])
        act = cost.train_activation_bytes(shape, batch_tokens, p["act"])
        fl = cost.train_flops(shape, batch_tokens, T) / batch_tokens
        return {
            "memory_bytes": self.fig(mem, "bytes", "computed",
                                     "cost.train_memory_bytes_zero1: %g B/param replicated + %g "
                                     "B/param / %d ranks + activations of %d tokens (%s)" % (
                                         p["replicated"], p["sharded"], ranks, batch_tokens,
                                         p["note"])),
            "activation_bytes": self.fig(act, "bytes", "computed",
                                         "cost.train_activation_bytes, %d B values" % p["act"]),
            "optimizer_bytes_per_rank": self.fig(
                shape.n_params * p["sharded"] / ranks, "bytes", "computed",
                "%g B/param / %d ranks (AdamW state%s)" % (
                    p["sharded"], ranks, " + fp32 master" if p["sharded"] > 8 else "")),
            "flops_per_token": self.fig(fl, "FLOP/token", "computed",
                                        "cost.train_flops / tokens: 6N + attention, rows of %d" % T),
        }

    # ---------------------------------------------------------------- inference
    def infer(self, entry, path, shape, work):
        c = self.settings(entry, "infer")
        n, P, D = int(c["requests"]), int(c["prompt_tokens"]), int(c["decode_tokens"])
        repeats = int(c.get("repeats", 1))
        d = os.path.join(work, "infer")
        os.makedirs(d, exist_ok=True)
        rng = random.Random(99)
        vocab = min(shape.vocab, 256) if c.get("byte_ids") else shape.vocab
        prompts = [[rng.randrange(vocab) for _ in range(P)] for _ in range(n)]
        block = 16
        kv_tok = cost.kv_bytes_per_token(shape, self.prec["kv"])

        def run(reqs, max_tokens, tag):
            f = os.path.join(d, tag + ".txt")
            with open(f, "w") as fh:
                for p in reqs:
                    fh.write("%d %s\n" % (max_tokens, " ".join(map(str, p))))
            blocks = len(reqs) * -(-(P + max_tokens) // block) + 1
            out_json = os.path.join(d, tag + ".json")
            cmd = [os.path.join(self.bin, "bench_infer"), os.path.abspath(path), f, out_json,
                   "--threads", str(self.threads), "--kv-bytes", str(int(blocks * block * kv_tok)),
                   "--max-seqs", str(max(len(reqs), 1)), "--block-size", str(block)]
            if c.get("max_batch_tokens"):
                cmd += ["--max-batch-tokens", str(int(c["max_batch_tokens"]))]
            best = None
            for _ in range(repeats):  # the fastest of the repeats: the least disturbed
                timeout = min(float(c.get("timeout_s", 600)), max(10.0, self.time_left()))
                rc, wall, maxrss, out = run_child(cmd, self.env, timeout)
                if rc != 0:
                    return None, self.failure("bench_infer", rc, timeout, out)
                j = json.load(open(out_json))
                j["max_rss_mib"] = maxrss
                if best is None or j["wall_s"] < best["wall_s"]:
                    best = j
            return best, "ok"

        res = {"settings": {"requests": n, "prompt_tokens": P, "decode_tokens": D,
                            "repeats": repeats, "kept": "the fastest of the repeats",
                            "backend": self.backend, "threads": self.threads,
                            "prefix_sharing": True, "note": "random distinct prompts: no prefix "
                            "is shared; greedy, eos ignored"}}
        pre, s1 = run(prompts, 1, "prefill")
        dec, s2 = run(prompts, 1 + D, "decode") if pre else (None, "not run")
        pre1 = dec1 = None
        s3 = s4 = "ok"
        if c.get("batch1", True):  # off for the largest GPU models: two more model loads
            pre1, s3 = run(prompts[:1], 1, "prefill_b1") if dec else (None, "not run")
            dec1, s4 = run(prompts[:1], 1 + D, "decode_b1") if pre1 else (None, "not run")
        shutil.rmtree(d, ignore_errors=True)
        for s in (s1, s2, s3, s4):
            if s != "ok":
                res["status"] = s
                break
        else:
            res["status"] = "ok"
        m = {}
        if pre:
            self.rate(m, "prefill_", pre["prompt_tokens"], pre["wall_s"],
                      "%d prompts x %d tokens, one token each; bench_infer wall (first add to last "
                      "result)" % (n, P))
        for tag, a, b, k in (("decode", pre, dec, n), ("decode_b1", pre1, dec1, 1)):
            if a and b:
                dt = b["wall_s"] - a["wall_s"]
                ntok = b["generated_tokens"] - a["generated_tokens"]
                if dt > 0 and ntok > 0:
                    self.rate(m, tag + "_", ntok, dt, "batch %d: %d tokens / (wall with %d new "
                              "tokens - wall with 1)" % (k, ntok, 1 + D))
                else:
                    m[tag + "_tokens_per_s"] = self.fig(None, "tokens/s", "measured",
                                                        "not resolved: the decode run was not "
                                                        "slower than the prefill run")
        if dec:
            res["settings"]["batch_invariant"] = dec.get("batch_invariant")
            m["peak_backend_mib"] = self.fig(dec["peak_bytes"] / MIB, "MiB", "measured",
                                             "bench_infer peak_bytes of the decode run: the "
                                             "engine's and model's backend buffers (weights, KV "
                                             "cache of %d bytes, workspace)" % dec["kv_bytes"])
            m["kv_cache_bytes"] = self.fig(dec["kv_bytes"], "bytes", "measured",
                                           "KV budget given (blocks of 16 tokens)")
            self.rss(m, dec["max_rss_mib"], "bench_infer (decode run)", dec["peak_rss_mib"],
                     "bench_infer's own report: VmHWM of the decode run")
        res["measured"] = m
        p = self.prec
        cached = n * (P + 1 + D)
        res["computed"] = {
            "memory_bytes": self.fig(cost.infer_memory_bytes(shape, cached, p["weights"], p["kv"]),
                                     "bytes", "computed",
                                     "cost.infer_memory_bytes: %d B/param + KV of %d tokens "
                                     "(%d B values)" % (p["weights"], cached, p["kv"])),
            "prefill_flops_per_token": self.fig(cost.forward_flops(shape, P, 0) / P, "FLOP/token",
                                                "computed", "cost.forward_flops: 2N + attention"),
            "decode_flops_per_token": self.fig(cost.forward_flops(shape, D, P + 1) / D,
                                               "FLOP/token", "computed",
                                               "cost.forward_flops after %d cached tokens" % (P + 1)),
        }
        return res

    def failure(self, what, rc, timeout, out):
        tail = " ".join(out.strip().splitlines()[-3:])[-300:]
        if rc == 124:
            return "timed out after %.0f s (%s)" % (timeout, what)
        oom = re.search(r"out of memory|cannot allocate|OOM", out, re.I)
        return "%s failed (rc %d)%s: %s" % (what, rc, ", out of memory" if oom else "", tail)

    # ---------------------------------------------------------------- one model
    def model(self, entry, work):
        name = entry["name"]
        rec = {"name": name}
        if "random" in entry:
            path = os.path.join(work, "model_" + name)
            dtype = entry.get("dtype", "BF16" if self.backend.startswith("cuda") else "F32")
            t0 = time.monotonic()
            write_random_model(path, entry["random"], dtype)
            rec["source"] = "random weights, %s shape (%s), written on the fly in %.1f s" % (
                entry["random"], dtype, time.monotonic() - t0)
        else:
            path = entry["path"].replace("$SHARED", self.args.shared)
            if not os.path.exists(path):
                rec["source"] = "missing: " + path
                rec["status"] = "skipped: %s not found" % path
                return rec, None
            rec["source"] = "real weights: " + os.path.relpath(path, ROOT) \
                if path.startswith(os.path.dirname(ROOT)) else path
        shape = model_shape(path, name)
        rec["shape"] = shape.to_dict()
        rec["status"] = "ok"
        return rec, (path, shape)

    def run(self):
        models = self.cfg["models"]
        if self.args.only:
            keep = set(self.args.only.split(","))
            models = [m for m in models if m["name"] in keep]
        out = {"study": "sizes", "issue": "12 item 2", "device": self.device,
               "commit": git_commit(),
               "date": cost.now_utc(), "backend": self.backend, "threads": self.threads,
               "precision": self.prec, "config": self.cfg, "lock": self.lock or None,
               "models": []}
        work = tempfile.mkdtemp(prefix="gllm_sizes_")
        try:
            for entry in models:
                if self.time_left() < 20:
                    out["models"].append({"name": entry["name"],
                                          "status": "not run: the time budget is spent"})
                    continue
                # one unit of work per model (its preparation and every measurement of it), so
                # that a sweep waits for the shared lock a few times, not once per measurement
                with self.unit(entry["name"]):
                    self.one_model(entry, work, out)
                self.write_partial(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out["units"] = self.loads
        out["fits"] = self.fits(out)
        out["quiet"] = self.quiet_note()
        return out

    def plan(self):
        """--dry-run: every model with its computed training and inference memory."""
        mem = self.device["memory_bytes"]
        print("sizes: %s, %.1f GiB (%s); backend %s" % (
            self.device["name"], mem / GIB, self.device["memory_source"], self.backend))
        for entry in self.cfg["models"]:
            t, i = self.settings(entry, "train"), self.settings(entry, "infer")
            if "random" in entry:
                sh = cost.shape_from_hf_config(SHAPES[entry["random"]], name=entry["name"])
                sh.n_params = count_shape(entry["random"])
            else:
                path = entry["path"].replace("$SHARED", self.args.shared)
                if not os.path.exists(path):
                    print("  %-28s missing: %s" % (entry["name"], path))
                    continue
                sh = model_shape(path, entry["name"])
            p = self.prec
            tr = cost.train_memory_bytes_zero1(sh, int(t["batch_size"]) * int(t["seq_len"]), 1,
                                               p["replicated"], p["sharded"], p["act"])
            kv = int(i["requests"]) * (int(i["prompt_tokens"]) + 1 + int(i["decode_tokens"]))
            inf = cost.infer_memory_bytes(sh, kv, p["weights"], p["kv"])
            print("  %-28s %9.1fM params  train %7.2f GiB  infer %7.2f GiB  %s%s" % (
                entry["name"], sh.n_params / 1e6, tr / GIB, inf / GIB,
                ",".join(entry.get("measure", ["train", "infer"])),
                "  (train not run: over the device)" if self.predicted_oom(entry, "train", sh)
                else ""))

    def predicted_oom(self, entry, what, shape):
        """With "skip_predicted_oom" in the config: a measurement whose computed memory exceeds
        the device's is not run (a failed load of a model that size costs minutes of a short GPU
        call); the reason names both figures. Else None."""
        if not self.cfg.get("skip_predicted_oom") or what not in ("train", "zero1"):
            return None
        t = self.settings(entry, "train")
        p = self.prec
        need = cost.train_memory_bytes_zero1(shape, int(t["batch_size"]) * int(t["seq_len"]),
                                             1, p["replicated"], p["sharded"], p["act"])
        mem = self.device["memory_bytes"]
        if mem and need > mem:
            return ("not run: computed %.1f GiB > %.1f GiB of device memory (does not fit, "
                    "computed)" % (need / GIB, mem / GIB))
        return None

    def write_partial(self, out):
        """The results so far (a sweep cut short by a timeout keeps what ran)."""
        if self.args.partial:
            out["units"] = self.loads
            tmp = self.args.partial + ".tmp"
            os.makedirs(os.path.dirname(os.path.abspath(tmp)), exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(out, f, indent=1)
            os.replace(tmp, self.args.partial)

    def one_model(self, entry, work, out):
        try:
            rec, mp = self.model(entry, work)
        except (OSError, ValueError, KeyError, ImportError, MemoryError) as e:
            # a machine without numpy or without the disk space for the weights: say so in the
            # results and go on with the next model
            rec, mp = {"name": entry["name"], "status": "failed to prepare: %s: %s" % (
                type(e).__name__, e)}, None
            shutil.rmtree(os.path.join(work, "model_" + entry["name"]), ignore_errors=True)
            print("sizes: %s: %s" % (entry["name"], rec["status"]), file=sys.stderr, flush=True)
        out["models"].append(rec)
        if not mp:
            return
        path, shape = mp
        for what in entry.get("measure", ["train", "infer"]):
            if self.time_left() < 15:
                rec[what] = {"status": "not run: the time budget is spent"}
                continue
            skip = self.predicted_oom(entry, what, shape)
            if skip:
                rec[what] = {"status": skip}
            elif what == "train":
                rec["train"] = self.train(entry, path, shape, work)
            elif what == "zero1":
                rec["zero1"] = self.train(entry, path, shape, work,
                                          int(self.cfg.get("zero1_ranks", 2)))
            elif what == "infer":
                rec["infer"] = self.infer(entry, path, shape, work)
            print("sizes: %s %s: %s" % (entry["name"], what, rec[what]["status"]),
                  file=sys.stderr, flush=True)
            self.write_partial(out)
        if "random" in entry:
            shutil.rmtree(path, ignore_errors=True)

    def finalize(self, out):
        """--finalize: the results of a sweep that was stopped (its --partial file), completed
        with the fits and the quiet note; the models it did not reach are listed as not run."""
        self.device = out["device"]
        self.loads = out.get("units", [])
        self.lock = out.get("lock")
        if self.args.commit:
            out["commit"] = self.args.commit
        out.setdefault("commit", "?")
        done = {m["name"] for m in out["models"]}
        for entry in self.cfg["models"]:
            if entry["name"] not in done:
                out["models"].append({"name": entry["name"],
                                      "status": "no result: the sweep's partial file ends "
                                                "before this model"})
        out["fits"] = self.fits(out)
        out["quiet"] = self.quiet_note()
        out["units"] = self.loads
        return out

    def quiet_note(self):
        if not self.loads:
            if self.lock:  # a stopped sweep's partial file from before the load notes were kept
                return ("each measurement ran alone under the shared CPU lock %s (quiet "
                        "machine); load averages not recorded" % self.lock)
            return "nothing ran"
        hi = max(max(u["load1_before"], u["load1_after"]) for u in self.loads)
        if self.lock:
            return ("each unit ran alone under the shared CPU lock %s (quiet machine); 1-minute "
                    "load average around the units at most %.2f on %d cores" % (
                        self.lock, hi, os.cpu_count()))
        return "no lock; 1-minute load average around the units at most %.2f" % hi

    # ---------------------------------------------------------------- fits
    def fits(self, out):
        """The largest model each approach fits, on one device and with ZeRO-1 on N: computed
        over the reference shapes (per-device memory against the device's memory), beside what
        the sweep measured (the largest model that ran, the smallest that failed for memory)."""
        f = self.cfg.get("fits", {})
        mem = float(f.get("memory_gib") or 0) * GIB or self.device["memory_bytes"]
        ranks = [int(r) for r in f.get("ranks", [1, 2, 4, 8])]
        bt = int(f.get("train_batch_tokens", int(self.cfg["train"]["seq_len"])))
        kvt = int(f.get("infer_kv_tokens", 4096))
        p = self.prec
        shapes = []
        for nm in f.get("shapes", sorted(SHAPES, key=lambda s: count_shape(s))):
            sh = cost.shape_from_hf_config(SHAPES[nm], name=nm)
            sh.n_params = count_shape(nm)
            shapes.append(sh)
        rows = []
        for sh in shapes:
            row = {"shape": sh.name, "n_params": sh.n_params,
                   "infer_bytes": cost.infer_memory_bytes(sh, kvt, p["weights"], p["kv"])}
            for r in ranks:
                row["train_bytes_%d" % r] = cost.train_memory_bytes_zero1(
                    sh, bt, r, p["replicated"], p["sharded"], p["act"])
            rows.append(row)
        res = {"device_memory_bytes": self.fig(mem, "bytes", "measured" if not f.get("memory_gib")
                                               else "computed", self.device["memory_source"]),
               "train_batch_tokens": bt, "infer_kv_tokens": kvt, "ranks": ranks, "rows": rows}
        largest = {}
        lab = "largest reference shape whose per-device memory fits %.1f GiB" % (mem / GIB)
        for r in ranks:
            ok = [row for row in rows if row["train_bytes_%d" % r] <= mem]
            largest["train_zero1_%d" % r] = self.fig(ok[-1]["shape"] if ok else None, "shape",
                                                     "computed", lab + " (training, ZeRO-1 over "
                                                     "%d ranks)" % r if r > 1 else lab +
                                                     " (training, one device)")
            # the parameter count where the analytic line meets the memory, activations of the
            # largest fitting shape kept as they are
            by_name = {sh.name: sh for sh in shapes}
            act = cost.train_activation_bytes(by_name[ok[-1]["shape"]] if ok else shapes[0], bt,
                                              p["act"]) if shapes else 0
            per = p["replicated"] + p["sharded"] / r
            largest["train_params_%d" % r] = self.fig(max(0.0, (mem - act) / per), "parameters",
                                                      "computed", "(memory - activations of %d "
                                                      "tokens) / %g B/param" % (bt, per))
        ok = [row for row in rows if row["infer_bytes"] <= mem]
        largest["infer"] = self.fig(ok[-1]["shape"] if ok else None, "shape", "computed",
                                    lab + " (inference, KV for %d tokens)" % kvt)
        largest["infer_params"] = self.fig(mem / p["weights"], "parameters", "computed",
                                           "memory / %d B/param (no KV)" % p["weights"])
        ran = {"train": [], "infer": []}
        failed = {"train": [], "infer": []}
        for m in out["models"]:
            for what in ("train", "infer"):
                r = m.get(what)
                if not r or "shape" not in m:
                    continue
                if r.get("status") == "ok":
                    ran[what].append((m["shape"]["n_params"], m["name"]))
                elif "out of memory" in r.get("status", ""):
                    failed[what].append((m["shape"]["n_params"], m["name"]))
        for what in ("train", "infer"):
            largest["measured_largest_" + what] = self.fig(
                max(ran[what])[1] if ran[what] else None, "model", "measured",
                "the largest model of this sweep that ran")
            largest["measured_oom_" + what] = self.fig(
                min(failed[what])[1] if failed[what] else None, "model", "measured",
                "the smallest model of this sweep that failed for memory")
        res["largest"] = largest
        return res


def git_commit():
    """The commit the binaries were presumably built from ("?" outside a git checkout)."""
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"],
                               timeout=10).returncode
        return (c + (" (with uncommitted changes)" if dirty else "")) if c else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def check_config(cfg, path):
    """Refuse a config the sweep would trip on halfway, naming the file and the field."""
    def need(obj, key, where):
        if key not in obj:
            raise SystemExit("sizes: %s: %s lacks \"%s\"" % (path, where, key))
    for key in ("train", "infer", "models"):
        need(cfg, key, "the config")
    for key in ("batch_size", "seq_len", "steps"):
        need(cfg["train"], key, "train")
    for key in ("requests", "prompt_tokens", "decode_tokens"):
        need(cfg["infer"], key, "infer")
    for i, m in enumerate(cfg["models"]):
        where = "models[%d]" % i
        need(m, "name", where)
        if ("random" in m) == ("path" in m):
            raise SystemExit("sizes: %s: %s (%s) needs exactly one of \"random\" and \"path\""
                             % (path, where, m["name"]))
        if "random" in m and m["random"] not in SHAPES:
            raise SystemExit("sizes: %s: %s: unknown shape \"%s\" (known: %s)" % (
                path, where, m["random"], ", ".join(SHAPES)))
        for what in m.get("measure", []):
            if what not in ("train", "zero1", "infer"):
                raise SystemExit("sizes: %s: %s: unknown measurement \"%s\" (train, zero1, "
                                 "infer)" % (path, where, what))


def count_shape(name):
    return sum(math.prod(s) for _, s, _ in hf_tensors(SHAPES[name]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(HERE, "sizes_cpu.json"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-cpu"),
                    help="folder with gtrain and bench_infer")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--stem", help="output name (default sizes_<device>_<date>)")
    ap.add_argument("--lock", help="the shared CPU lock file, taken per unit of work")
    ap.add_argument("--only", help="comma list of model names to run")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds for the whole sweep (0 = none): what does not fit is 'not run'")
    ap.add_argument("--partial", help="rewrite this JSON file after every unit")
    ap.add_argument("--finalize", metavar="PARTIAL_JSON",
                    help="write the outputs of a stopped sweep from its --partial file (with the "
                         "same --config)")
    ap.add_argument("--commit", help="with --finalize: the gllm commit the measuring binaries "
                                      "were built from, where the partial file does not say")
    ap.add_argument("--json-only", action="store_true",
                    help="write only the JSON (render it later with sizes_report.py)")
    ap.add_argument("--dry-run", action="store_true",
                    help="check the config and print the plan (models, computed memory against "
                         "the device's); runs nothing")
    ap.add_argument("--shared", default=os.environ.get("GLLM_SHARED_DIR",
                                                       os.path.join(ROOT, "..", "shared")))
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    args.shared = os.path.abspath(args.shared)
    args.bin = os.path.abspath(args.bin)
    with open(args.config) as f:
        cfg = json.load(f)
    check_config(cfg, args.config)
    sweep = Sweep(cfg, args)
    if args.dry_run:
        sweep.plan()
        return None
    if args.finalize:
        with open(args.finalize) as f:
            res = sweep.finalize(json.load(f))
    else:
        for exe in ("gtrain", "bench_infer"):
            if not os.access(os.path.join(args.bin, exe), os.X_OK):
                raise SystemExit("sizes: %s not found in %s (build it, or pass --bin)" % (
                    exe, args.bin))
        res = sweep.run()
    res["config_path"] = os.path.relpath(os.path.abspath(args.config), ROOT)
    stem = args.stem or "sizes_%s_%s" % (sweep.device["label"], res["date"][:10])
    if args.json_only:
        path = os.path.join(args.out_dir, stem + ".json")
        os.makedirs(args.out_dir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        print(path)
    else:
        for p in sizes_report.write_outputs(res, args.out_dir, stem):
            print(p)
    print(summary_line(res))
    return res


def summary_line(res):
    """One line: what ran, the largest model each approach ran with (the check's verdict)."""
    ms = res["models"]
    n_tr = sum((m.get("train") or {}).get("status") == "ok" for m in ms)
    n_in = sum((m.get("infer") or {}).get("status") == "ok" for m in ms)
    lg = res["fits"]["largest"]
    return ("sizes: %d models on %s: training measured on %d, inference on %d; largest trained %s, "
            "largest inferred %s; computed largest to train on one device %s, to infer %s" % (
                len(ms), res["device"]["name"], n_tr, n_in,
                lg["measured_largest_train"]["value"], lg["measured_largest_infer"]["value"],
                lg["train_zero1_1"]["value"], lg["infer"]["value"]))


if __name__ == "__main__":
    main()
