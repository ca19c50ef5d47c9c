#!/usr/bin/env python3
"""The trade-off suite (issue 12): fine-tuning vs prompting, measured with gllm's own binaries.

    python3 bench/tradeoff/run.py bench/tradeoff/studies/quick.json [--out DIR] [--publish DIR]

One JSON config per study (see bench/tradeoff/README.md). The runner builds prompts from the
real data sets, runs every arm through build/ginfer (scoring: candidate logprobs, the same for
every arm) and build/gtrain (full fine-tuning on {"prompt","completion"} records, validation
loss on held-out dev records), and writes one JSON file per arm under OUT/arms/ as soon as the
arm ends. A rerun skips the arms already done, so an interrupted study continues. Then
report.py writes results.json, arms.csv, examples.csv, report.md and the plots.

With GLLM_BENCH_LOCK=/path/to/lock set, every unit of work (one arm, or one training) holds that
lock (flock) while it runs, so the timings come from a machine nobody else is using and other
jobs run between units.
"""

import argparse
import csv
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import cost  # noqa: E402


def log(msg):
    print("[tradeoff %s] %s" % (time.strftime("%H:%M:%S", time.gmtime()), msg), flush=True)


class Skip(Exception):
    """An asset the study needs is missing (the CI test turns this into a skip)."""


class OutOfTime(Exception):
    """--stop-after passed: no new unit of work starts (a rerun continues from there)."""


# ------------------------------------------------------------------ config and data

def resolve(path, base):
    """A config path: absolute, or relative to the repository root, or to the config's folder."""
    if os.path.isabs(path):
        return path
    for b in (ROOT, base):
        p = os.path.normpath(os.path.join(b, path))
        if os.path.exists(p):
            return p
    return os.path.normpath(os.path.join(ROOT, path))


def first_existing(paths, base, what):
    for p in paths if isinstance(paths, list) else [paths]:
        q = resolve(p, base)
        if os.path.exists(q):
            return q
    raise Skip("%s not found (looked for %s)" % (what, ", ".join(paths if isinstance(paths, list) else [paths])))


def read_sst2(path):
    out = []
    with open(path, encoding="utf-8") as f:
        r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        head = next(r)
        if head[:2] != ["sentence", "label"]:
            raise ValueError("%s:1: expected the header 'sentence<TAB>label', got %r" % (path, head))
        for i, row in enumerate(r, start=2):
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise ValueError("%s:%d: expected 'sentence<TAB>0|1'" % (path, i))
            out.append((row[0].strip(), int(row[1])))
    return out


TREC_COARSE = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def read_trec(path):
    out = []
    with open(path, encoding="latin-1") as f:
        for i, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            m = re.match(r"^([A-Z]+):(\S+) (.+)$", line)
            if not m or m.group(1) not in TREC_COARSE:
                raise ValueError("%s:%d: expected 'COARSE:fine question'" % (path, i))
            out.append((m.group(3).strip(), TREC_COARSE.index(m.group(1))))
    return out


READERS = {"sst2": read_sst2, "trec": read_trec}


def load_task(t, base):
    """train, dev, test lists of (text, label index). A task without a dev file takes its dev
    examples from the end of the shuffled train file (never trained on)."""
    reader = READERS[t["format"]]
    train = reader(first_existing(t["train"], base, "task %s train file" % t["name"]))
    test = reader(first_existing(t["test"], base, "task %s test file" % t["name"]))
    rng = random.Random(t.get("seed", 1))
    rng.shuffle(train)
    if t.get("dev"):
        dev = reader(first_existing(t["dev"], base, "task %s dev file" % t["name"]))
    else:
        nd = t.get("dev_from_train", 500)
        dev, train = train[-nd:], train[:-nd]
    return train, dev, test


def sample(rows, n, seed):
    rng = random.Random(seed)
    idx = list(range(len(rows)))
    rng.shuffle(idx)
    return [rows[i] for i in sorted(idx[:n])]


# ------------------------------------------------------------------ prompts

def content(task, phrasing, shots, text):
    """The user message: instruction, k demonstrations, the query."""
    demo = "".join(task["shot_format"].format(text=s, label=task["labels"][l]) for s, l in shots)
    return task["phrasings"][phrasing] + "\n\n" + demo + task["query_format"].format(text=text)


def render(study, c):
    return study["template"].replace("{content}", c)


# ------------------------------------------------------------------ running the binaries

def cpu_mark():
    """(wall, busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process
    and its waited-for children, steal seconds), or None where /proc/stat is not readable."""
    import resource
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = float(os.sysconf("SC_CLK_TCK"))
    busy = (sum(v[:8]) - v[3] - v[4]) / hz  # all but idle and iowait (steal included)
    steal = (v[7] if len(v) > 7 else 0) / hz  # time the hypervisor gave this VM's CPUs to others
    own = sum(getattr(resource.getrusage(w), a) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for a in ("ru_utime", "ru_stime"))
    return time.time(), busy, own, steal


def cpu_others(mark):
    """How quiet the machine was since mark: wall time, CPU seconds that other processes of this
    machine used (0 on a quiet machine, up to the wall time x cores) and CPU seconds the hypervisor
    took (steal: a virtual machine whose host is busy runs slower though nothing else runs here)."""
    now = cpu_mark()
    if mark is None or now is None:
        return None
    steal = max(0.0, now[3] - mark[3])
    return {"wall_s": round(now[0] - mark[0], 1),
            "others_cpu_s": round(max(0.0, (now[1] - mark[1]) - (now[2] - mark[2]) - steal), 1),
            "steal_s": round(steal, 1), "cores": os.cpu_count()}


class Runner:
    def __init__(self, study, cfg_dir, out):
        self.s = study
        self.base = cfg_dir
        self.out = out
        self.bins = resolve(os.environ.get("GLLM_BUILD_DIR", study.get("build_dir", "build")), cfg_dir)
        for b in ("ginfer", "gtrain"):
            if not os.access(os.path.join(self.bins, b), os.X_OK):
                raise Skip("%s/%s not built (set GLLM_BUILD_DIR or build_dir)" % (self.bins, b))
        self.model = first_existing(study["model"], cfg_dir, "model")
        self.shape = cost.load_shape(self.model)
        self.threads = int(study.get("threads", 2))
        self.device = study.get("device", "cpu")
        self.lock_path = os.environ.get("GLLM_BENCH_LOCK")
        self.waited_s = 0.0  # time spent waiting for the lock
        self.busy_s = 0.0    # time spent in units of work
        self.lock_file = None
        self.held_since = 0.0
        self.hold_s = float(os.environ.get("GLLM_BENCH_LOCK_HOLD_S", "0"))
        self.stop_at = None  # time.time() after which no unit starts (--stop-after)
        self.unit_mark = None  # cpu_mark() at the start of the unit in progress
        os.makedirs(os.path.join(out, "arms"), exist_ok=True)
        os.makedirs(os.path.join(out, "work"), exist_ok=True)

    # one unit of work under the shared lock
    def locked(self, fn, *a, **k):
        """Run a unit of work holding the lock. With GLLM_BENCH_LOCK_HOLD_S=S the lock is kept
        across consecutive units until it has been held S seconds (fewer waits; every unit is
        still timed alone), then released so that others can run. After --stop-after no unit
        starts (OutOfTime): a unit already running always ends, so its record is whole."""
        if self.stop_at is not None and time.time() >= self.stop_at:
            raise OutOfTime()
        if self.lock_path and self.lock_file is None:
            lf = open(self.lock_path, "a")
            t = time.time()
            fcntl.flock(lf, fcntl.LOCK_EX)
            waited = time.time() - t
            self.waited_s += waited
            if waited > 1:
                log("waited %.0f s for %s" % (waited, self.lock_path))
            self.lock_file, self.held_since = lf, time.time()
        t = time.time()
        self.unit_mark = cpu_mark()  # save() records the CPU time others used during the unit
        try:
            return fn(*a, **k)
        finally:
            self.busy_s += time.time() - t
            if self.lock_file is not None and time.time() - self.held_since >= self.hold_s:
                self.unlock()

    def unlock(self):
        if self.lock_file is not None:
            fcntl.flock(self.lock_file, fcntl.LOCK_UN)
            self.lock_file.close()
            self.lock_file = None

    def run_cmd(self, argv, log_path):
        """Run a binary; returns (wall seconds, peak RSS MiB of that process)."""
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
        t0 = time.time()
        with open(log_path, "w") as lf:
            p = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, env=env)
            _, status, ru = os.wait4(p.pid, 0)
        wall = time.time() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(log_path) as f:
                tail = f.read()[-2000:]
            raise RuntimeError("%s failed (exit %d); %s ends:\n%s" % (argv[0], code, log_path, tail))
        return wall, ru.ru_maxrss / 1024.0

    def ginfer(self, model, lines, name, sharing=True):
        """Score lines ({"id","prompt","candidates"}) with ginfer; returns results and summary."""
        d = os.path.join(self.out, "work", "infer")
        os.makedirs(d, exist_ok=True)
        inp, outp = os.path.join(d, name + ".in.jsonl"), os.path.join(d, name + ".out.jsonl")
        summ = os.path.join(d, name + ".summary.json")
        with open(inp, "w") as f:
            for x in lines:
                f.write(json.dumps(x) + "\n")
        argv = [os.path.join(self.bins, "ginfer"), "--model", model, "--backend", self.device,
                "--threads", str(self.threads), "--quiet", "--overwrite", "--fail-fast",
                "--prefix-sharing", "on" if sharing else "off", "--summary", summ, inp, outp]
        if self.s.get("kv_bytes"):
            argv[1:1] = ["--kv-bytes", str(self.s["kv_bytes"])]
        if self.s.get("block_size"):  # the KV block (sharing granularity); default: the engine's
            argv[1:1] = ["--block-size", str(self.s["block_size"])]
        wall, rss = self.run_cmd(argv, os.path.join(d, name + ".log"))
        with open(outp) as f:
            res = [json.loads(l) for l in f if l.strip()]
        with open(summ) as f:
            sm = json.load(f)
        if len(res) != len(lines) or any(r.get("error") for r in res):
            bad = [r for r in res if r.get("error")][:1]
            raise RuntimeError("ginfer %s: %d results for %d lines; %s" % (name, len(res), len(lines), bad))
        return res, sm, wall, rss

    def gtrain(self, name, records, val_records, model, ft):
        """Fine-tune with gtrain. A run longer than max_unit_s is cut into pieces, each under the
        lock: gtrain checkpoints every few steps, gets SIGINT after a checkpoint once the piece has
        run long enough, and continues with --resume (bit for bit; gtrain's "seconds" count only
        the steps kept, so the training time is that of an uninterrupted run)."""
        d = os.path.join(self.out, "work", "train", name)
        os.makedirs(d, exist_ok=True)
        for fn, recs in (("train.jsonl", records), ("dev.jsonl", val_records)):
            with open(os.path.join(d, fn), "w") as f:
                for x in recs:
                    f.write(json.dumps(x) + "\n")
        tok_rec = ft.get("est_tokens_per_record", 80)
        est_rows = max(1, int(len(records) * tok_rec / ft["seq_len"]) + 1)
        est_steps = max(1, est_rows // ft["batch_size"]) * ft["epochs"]
        cfg = {"model": model, "data": "train.jsonl", "val_data": "dev.jsonl", "out_dir": "run",
               "backend": self.device, "seq_len": ft["seq_len"], "batch_size": ft["batch_size"],
               "epochs": ft["epochs"], "lr": ft["lr"], "warmup_steps": ft.get("warmup_steps", 0),
               "weight_decay": ft.get("weight_decay", 0.0), "seed": ft.get("seed", 1234),
               "eval_every": max(1, est_steps // ft.get("evals", 8)), "overwrite": True}
        unit_s = float(self.s.get("max_unit_s", 540))
        est_s = est_steps * ft["batch_size"] * ft["seq_len"] / float(self.s.get("est_train_tok_s", 170))
        pieces = est_s > unit_s
        if pieces:
            cfg["save_every"] = max(1, int(est_steps * min(90.0, unit_s / 3) / est_s))
            cfg["keep_checkpoints"] = 1
        with open(os.path.join(d, "train.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        with open(os.path.join(d, "resume.json"), "w") as f:  # the same run, continued
            json.dump(dict(cfg, overwrite=False, resume=True), f, indent=1)
        run = os.path.join(d, "run")
        argv = [os.path.join(self.bins, "gtrain"), os.path.join(d, "train.json")]
        argv_resume = [os.path.join(self.bins, "gtrain"), os.path.join(d, "resume.json")]
        total_wall, rss, k = 0.0, 0.0, 0
        if pieces and os.path.exists(os.path.join(run, "latest")):
            # pieces of this run were trained by an earlier invocation that stopped between pieces
            # (--stop-after, or killed): continue from its last checkpoint
            log("%s: continuing the training from %s" % (name, os.path.join(run, "latest")))
            k = 1
        resumed = k
        while True:
            def piece():
                lp = os.path.join(d, "gtrain.%d.log" % k)
                if not pieces:
                    return self.run_cmd(argv, lp) + (True,)
                return self.run_piece(argv_resume if k else argv, lp, run, unit_s)
            wall, r, finished = self.locked(piece)
            total_wall += wall
            rss = max(rss, r)
            if finished:
                break
            k += 1
            log("%s: training paused after piece %d (%.0f s), continues with --resume" % (name, k, wall))
        with open(os.path.join(run, "summary.json")) as f:
            summ = json.load(f)
        curve = []
        with open(os.path.join(run, "metrics.jsonl")) as f:
            for line in f:
                o = json.loads(line)
                if o.get("event") == "eval":
                    curve.append({"step": o["step"], "val_loss": o["val_loss"]})
                elif "event" not in o:
                    curve.append({"step": o["step"], "loss": o["loss"], "elapsed_s": o["elapsed_s"]})
        final = os.path.join(run, "final")
        size = sum(os.path.getsize(os.path.join(final, x)) for x in os.listdir(final))
        for c in os.listdir(run):  # checkpoints of a run in pieces: not needed any more
            if c.startswith("checkpoint-"):
                shutil.rmtree(os.path.join(run, c), ignore_errors=True)
        return {"summary": summ, "curve": curve, "wall_s": total_wall, "rss_mib": rss, "final": final,
                "disk_bytes": size, "config": cfg, "pieces": k + 1, "resumed_run": bool(resumed)}

    def run_piece(self, argv, log_path, run, unit_s):
        def steps_left(path):
            """Steps still to run after the one in progress, from gtrain's last "step a/b" line:
            SIGINT stops gtrain after the step in progress, which must not be the last one (a
            run stopped after its last checkpoint cannot be resumed to write final/)."""
            with open(path, errors="replace") as f:
                m = re.findall(r"step (\d+)/(\d+)", f.read()[-4000:])
            return int(m[-1][1]) - int(m[-1][0]) - 1 if m else 0

        """One piece of a long training: SIGINT once unit_s/2 has passed and a new checkpoint has
        been written (gtrain stops at the next step; the steps after the checkpoint are redone by
        the next piece). Returns (wall, peak RSS MiB, finished)."""
        import signal
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
        latest = os.path.join(run, "latest")

        def mark():
            try:
                with open(latest) as f:
                    return f.read().strip()
            except OSError:
                return None
        m0 = mark()
        t0 = time.time()
        with open(log_path, "w") as lf:
            p = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, env=env)
            sent = False
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                el = time.time() - t0
                mk = mark()  # a piece always ends just after a new checkpoint, so every piece makes progress
                if not sent and mk is not None and mk != m0 and el > unit_s / 2 and steps_left(log_path) >= 2:
                    p.send_signal(signal.SIGINT)
                    sent = True
                time.sleep(0.02)
        wall = time.time() - t0
        code = os.waitstatus_to_exitcode(status)
        with open(log_path) as f:
            text = f.read()
        if code == 0:
            return wall, ru.ru_maxrss / 1024.0, True
        if sent and "interrupted" in text and mark() is not None:
            return wall, ru.ru_maxrss / 1024.0, False
        raise RuntimeError("%s failed (exit %d); %s ends:\n%s" % (argv[0], code, log_path, text[-2000:]))


# ------------------------------------------------------------------ arms

def score_lines(task, prompts, rows):
    return [{"id": str(i), "prompt": p, "candidates": list(task["labels"])} for i, p in enumerate(prompts)]


def per_example(task, rows, res, shape, score):
    """Per-example scores from ginfer's candidate logprobs, and their computed FLOPs."""
    out = []
    key = "mean_logprob" if score == "mean" else "logprob"
    for (text, gold), r in zip(rows, res):
        lps = [c[key] for c in r["candidates"]]
        pred = max(range(len(lps)), key=lambda i: lps[i])  # first on ties
        u = r["usage"]
        cand_toks = [len(c["token_logprobs"]) for c in r["candidates"]]
        out.append({"gold": gold, "pred": pred, "correct": int(pred == gold), "logprobs": lps,
                    "prompt_tokens": u["prompt_tokens"], "cached_tokens": u["cached_tokens"],
                    "candidate_tokens": cand_toks,
                    "flops": cost.query_flops(shape, u["prompt_tokens"], cand_toks, u["cached_tokens"]),
                    "flops_nocache": cost.query_flops(shape, u["prompt_tokens"], cand_toks, 0)})
    return out


class Study:
    def __init__(self, cfg_path, out, model=None):
        with open(cfg_path) as f:
            self.s = json.load(f)
        if model:
            self.s["model"] = [os.path.abspath(model)]
        self.cfg_path = cfg_path
        self.base = os.path.dirname(os.path.abspath(cfg_path))
        self.out = out
        self.r = Runner(self.s, self.base, out)
        self.date = cost.now_utc()
        self.score = self.s.get("score", "sum")
        self.tasks = {}
        for t in self.s["tasks"]:
            train, dev, test = load_task(t, self.base)
            self.tasks[t["name"]] = {"cfg": t, "train": train, "dev": dev, "test": test}
        self.load_s = None  # model load + one query, per model (the 1-query run)

    def arm_path(self, name):
        return os.path.join(self.out, "arms", name + ".json")

    def done(self, name):
        return os.path.exists(self.arm_path(name))

    def save(self, name, rec):
        rec["name"] = name
        rec.setdefault("date", cost.now_utc())
        rec.setdefault("device", self.r.device)
        if self.r.unit_mark:  # how quiet the machine was: CPU seconds of other processes
            rec.setdefault("quiet", cpu_others(self.r.unit_mark))
        tmp = self.arm_path(name) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, self.arm_path(name))

    def eval_rows(self, tname):
        t = self.tasks[tname]
        return sample(t["test"], self.s["eval_n"], t["cfg"].get("seed", 1) + 101)

    # a scoring run over rows with prompts built by make(text)
    def scoring_arm(self, name, tname, kind, make, model=None, rows=None, sharing=True, extra=None, shape=None,
                    template=None):
        if self.done(name):
            return
        task = self.tasks[tname]["cfg"]
        rows = rows if rows is not None else self.eval_rows(tname)
        model = model or self.r.model

        def unit():
            st = dict(self.s, template=template) if template else self.s
            prompts = [render(st, make(text)) for text, _ in rows]
            res, sm, wall, rss = self.r.ginfer(model, score_lines(task, prompts, rows), name, sharing)
            ex = per_example(task, rows, res, shape or self.r.shape, self.score)
            rec = {"task": tname, "kind": kind, "n_queries": len(rows), "sharing": sharing,
                   "wall_s": wall, "ginfer_wall_s": sm["wall_s"], "peak_rss_mib": rss,
                   "peak_memory_bytes": sm.get("peak_memory_bytes"), "examples": ex,
                   "model": model, "accuracy": sum(e["correct"] for e in ex) / len(ex)}
            rec.update(extra or {})
            self.save(name, rec)
            log("%s: accuracy %.3f, %d queries, %.1f s" % (name, rec["accuracy"], len(rows), wall))
        self.r.locked(unit)

    def one_query(self, name, model, prompt, tname):
        """Time to the first answer: a fresh ginfer on one query (load included)."""
        if self.done(name):
            return
        task = self.tasks[tname]["cfg"]

        def unit():
            res, sm, wall, rss = self.r.ginfer(model, [{"id": "0", "prompt": prompt, "candidates": task["labels"]}],
                                               name)
            self.save(name, {"task": tname, "kind": "first_answer", "wall_s": wall, "model": model,
                             "peak_rss_mib": rss, "prompt_tokens": res[0]["usage"]["prompt_tokens"]})
        self.r.locked(unit)

    def zero_shot(self, tname, phrasings):
        for p in phrasings:
            self.scoring_arm("%s.zs.p%d" % (tname, p), tname, "zero_shot",
                             lambda text, p=p: content(self.tasks[tname]["cfg"], p, [], text),
                             extra={"phrasing": p, "k": 0})

    def shots(self, tname, k, draw, pool=None):
        t = self.tasks[tname]
        pool = pool if pool is not None else t["train"]
        return sample(pool, k, 1000 * draw + 7 * k + 3)

    def k_shot(self, tname, ks, draws, phrasing, ctx):
        task = self.tasks[tname]["cfg"]
        for k in ks:
            for d in range(draws):
                name = "%s.ks.k%d.d%d" % (tname, k, d)
                sh = self.shots(tname, k, d)
                # the longest prompt of the arm must fit the context (with the candidates)
                longest = max(len(text) for text, _ in self.eval_rows(tname))
                est = len(render(self.s, content(task, phrasing, sh, "x" * longest))) / 3.0 + 16
                if est > ctx:
                    log("%s: skipped, about %d tokens exceed the context of %d" % (name, est, ctx))
                    self.save(name, {"task": tname, "kind": "k_shot", "k": k, "draw": d, "skipped": "context"})
                    continue
                self.scoring_arm(name, tname, "k_shot", lambda text, sh=sh: content(task, phrasing, sh, text),
                                 extra={"k": k, "draw": d, "phrasing": phrasing,
                                        "shot_tokens_est": None})

    def sharing_off(self, tname, ks, n, phrasing):
        task = self.tasks[tname]["cfg"]
        rows = self.eval_rows(tname)[:n]
        for k in ks:
            if k and os.path.exists(self.arm_path("%s.ks.k%d.d0" % (tname, k))):
                with open(self.arm_path("%s.ks.k%d.d0" % (tname, k))) as f:
                    if json.load(f).get("skipped"):
                        continue
            sh = self.shots(tname, k, 0) if k else []
            for on in (True, False):
                self.scoring_arm("%s.share%s.k%d" % (tname, "on" if on else "off", k), tname, "sharing",
                                 lambda text, sh=sh: content(task, phrasing, sh, text), rows=rows, sharing=on,
                                 extra={"k": k, "phrasing": phrasing, "subset": n})

    def ft_records(self, tname, rows, phrasing):
        task = self.tasks[tname]["cfg"]
        return [{"prompt": render(self.s, content(task, phrasing, [], text)), "completion": task["labels"][l]}
                for text, l in rows]

    def finetune(self, tname, n, ft, phrasing, model=None, rows=None, name=None, extra=None):
        """Train on n examples (the first n of the shuffled train set), then score zero-shot."""
        t = self.tasks[tname]
        name = name or "%s.ft.n%d" % (tname, n)
        tname_arm = name + ".train"
        rows = rows if rows is not None else t["train"][:n]
        dev = t["dev"][: self.s.get("dev_n", 100)]
        if self.done(tname_arm) and not self.done(name):
            with open(self.arm_path(tname_arm)) as f:
                old = json.load(f)
            if not os.path.exists(os.path.join(old["final"], "model.safetensors")):
                # trained, not scored, and the weights are gone (another run folder, or deleted):
                # train again; the earlier record is kept beside the arms, not counted
                prev = self.arm_path(tname_arm)[:-len(".json")] + ".prev"
                log("%s: trained at %s but its weights %s are gone: training again (the earlier record "
                    "moves to %s)" % (tname_arm, old.get("date"), old["final"], prev))
                os.replace(self.arm_path(tname_arm), prev)
        if not self.done(tname_arm):
            def unit():
                tr = self.r.gtrain(name, self.ft_records(tname, rows, phrasing), self.ft_records(tname, dev, phrasing),
                                   model or self.r.model, ft)
                sm = tr["summary"]
                rec = {"task": tname, "kind": "ft_train", "n": len(rows), "epochs": ft["epochs"],
                       "seq_len": ft["seq_len"], "train_s": sm["seconds"], "wall_s": tr["wall_s"],
                       "tokens": sm["tokens"], "steps": sm["steps"], "peak_mem_mib": max(sm["peak_mem_mib_per_rank"]),
                       "peak_rss_mib": tr["rss_mib"], "gtrain_flops_per_token": sm["train_flops_per_token"],
                       "first_loss": sm["first_loss"], "final_loss": sm["final_loss"],
                       "final_val_loss": sm["final_val_loss"], "curve": tr["curve"], "final": tr["final"],
                       "disk_bytes": tr["disk_bytes"], "config": tr["config"], "base_model": model or self.r.model,
                       "pieces": tr["pieces"]}
                rec.update(extra or {})
                self.save(tname_arm, rec)
                log("%s: %d steps, %.0f s, loss %.3f -> %.3f, val %.3f" % (tname_arm, sm["steps"], sm["seconds"],
                    sm["first_loss"], sm["final_loss"], sm["final_val_loss"]))
            unit()  # gtrain takes the lock per piece itself
        with open(self.arm_path(tname_arm)) as f:
            final = json.load(f)["final"]
        self.scoring_arm(name, tname, "fine_tuned",
                         lambda text: content(t["cfg"], phrasing, [], text), model=final,
                         extra=dict({"n": len(rows), "phrasing": phrasing, "train_arm": tname_arm}, **(extra or {})))
        return final

    def wikitext(self, name, model, n_chunks, chunk_chars):
        """Held-out general text: mean token NLL of WikiText-2 chunks (scored as candidates)."""
        if self.done(name):
            return
        path = first_existing(self.s["wikitext"], self.base, "WikiText-2")
        with open(path, encoding="utf-8") as f:
            paras = [p.strip() for p in f.read().split("\n") if len(p.strip()) > chunk_chars and not p.strip().startswith("=")]
        paras = paras[:n_chunks]
        lines = []
        for i, p in enumerate(paras):
            body = p[:chunk_chars]
            cut = body.index(" ", 40)
            lines.append({"id": str(i), "prompt": body[:cut], "candidates": [body[cut:]]})

        def unit():
            res, sm, wall, rss = self.r.ginfer(model, lines, name)
            lp = sum(sum(r["candidates"][0]["token_logprobs"]) for r in res)
            nt = sum(len(r["candidates"][0]["token_logprobs"]) for r in res)
            self.save(name, {"kind": "wikitext", "model": model, "nll": -lp / nt, "tokens": nt, "chunks": len(res),
                             "wall_s": wall})
            log("%s: WikiText-2 NLL %.4f over %d tokens" % (name, -lp / nt, nt))
        self.r.locked(unit)

    def cleanup_weights(self, final):
        """Fine-tuned weights are big (fp32): drop them once every arm that needs them ran."""
        if self.s.get("keep_weights"):
            return
        for fn in os.listdir(final):
            if fn.endswith(".safetensors"):
                os.remove(os.path.join(final, fn))

    # ------------------------------------------------------------------ the study
    def run(self):
        """Arms in an order that gives a useful report early, cheap and needed before long (a
        study cut short still has every task's prompting arms and its small fine-tunes): per task
        the first answer, zero-shot and k-shot up to k_shot.early_max; then the first two
        fine-tuning sizes of every task (with versatility and maintenance where configured for
        that size: they need its weights); then the base model's versatility and the other models
        (a few seconds each); then sharing on/off; then the larger k, smallest first, with the
        larger fine-tunes after the first of them (a long k is the least informative arm)."""
        s = self.s
        ctx = s.get("context", 2048)
        ks = s["k_shot"]
        ft = s["finetune"]
        ph = s.get("phrasing", 0)
        order = s.get("tasks_order", [t["name"] for t in s["tasks"]])
        early = [k for k in ks["k"] if k <= ks.get("early_max", 8)]
        late = sorted(k for k in ks["k"] if k not in early)
        ns = ft["n"]
        for tname in order:
            task = self.tasks[tname]["cfg"]
            self.one_query("%s.first.zs" % tname, self.r.model,
                           render(s, content(task, ph, [], self.eval_rows(tname)[0][0])), tname)
            self.zero_shot(tname, s["zero_shot"]["phrasings"])
            self.k_shot(tname, early, ks["draws"], ph, ctx)
        for n in ns[:2]:
            for tname in order:
                self.ft_arm(tname, n, ft, ph, ks)
        if s.get("versatility"):
            self.versatility(None, "base", self.r.model, s["versatility"], ph)
        self.other_models(order, ph)
        for tname in order:
            so = s.get("sharing_off")
            if so:  # per_task: {"task": {"k": [...]}} overrides for one task
                so = dict(so, **so.get("per_task", {}).get(tname, {}))
                self.sharing_off(tname, so["k"], so["n"], ph)
            mt = s.get("maintenance")
            if mt:
                self.maintenance(tname, mt["base_n"], mt, ft, ph, ks)
        for tname in order:
            self.k_shot(tname, late[:1], ks["draws"], ph, ctx)
        for n in ns[2:]:
            for tname in order:
                self.ft_arm(tname, n, ft, ph, ks)
        for tname in order:
            self.k_shot(tname, late[1:], ks["draws"], ph, ctx)

    def other_models(self, order, ph):
        """"Dependent on the base model": the same zero-shot prompts on another model."""
        for om in self.s.get("other_models", []):
            try:
                path = first_existing(om["model"], self.base, "model %s" % om["label"])
            except Skip as e:
                log("other model skipped: %s" % e)
                continue
            shape = cost.load_shape(path)
            for tname in order:
                for p in om.get("phrasings", [ph]):
                    self.scoring_arm("%s.model.%s.p%d" % (tname, om["tag"], p), tname, "model_dep",
                                     lambda text, p=p, tname=tname: content(self.tasks[tname]["cfg"], p, [], text),
                                     model=path, shape=shape, template=om.get("template"),
                                     extra={"model_label": om["label"], "phrasing": p, "k": 0})

    def ft_arm(self, tname, n, ft, ph, ks):
        s = self.s
        task = self.tasks[tname]["cfg"]
        nn = len(self.tasks[tname]["train"]) if n == "all" else int(n)
        cap = ft.get("all_cap")
        if n == "all" and cap and nn > cap:
            log("%s: fine-tuning on 'all' %d examples capped at %d (study config)" % (tname, nn, cap))
            nn = cap
        name = "%s.ft.n%d" % (tname, nn)
        final = self.finetune(tname, nn, ft, ph, extra={"n_label": str(n), "capped_from":
                              len(self.tasks[tname]["train"]) if n == "all" and nn < len(self.tasks[tname]["train"]) else None})
        if nn == ft.get("first_answer_n", ft["n"][0]):
            self.one_query(name + ".first", final, render(s, content(task, ph, [], self.eval_rows(tname)[0][0])), tname)
        vers = s.get("versatility")
        if vers and n in vers.get("ft_n", []):
            self.versatility(tname, name, final, vers, ph)
            self.versatility(None, "base", self.r.model, vers, ph)
        mt = s.get("maintenance")
        if mt and nn == mt["base_n"] and tname in mt.get("tasks", [tname]):
            self.maintenance(tname, nn, mt, ft, ph, ks)
        elif os.path.isdir(final):
            self.cleanup_weights(final)

    def versatility(self, tname, tag, model, vers, ph):
        """WikiText-2 loss and the other tasks' zero-shot accuracy of a model (tag "base" or the
        fine-tuned arm's name, trained on task tname)."""
        self.wikitext("wiki.%s" % tag, model, vers["wiki_chunks"], vers.get("chunk_chars", 1200))
        for o in self.tasks:
            if o == tname:
                continue
            rows = self.eval_rows(o)[: vers.get("other_n", 100)]
            self.scoring_arm("other.%s.%s" % (tag, o), o, "other_task",
                             lambda text, o=o: content(self.tasks[o]["cfg"], ph, [], text), model=model, rows=rows,
                             extra={"phrasing": ph, "ft_arm": tag, "ft_task": tname})

    def maintenance(self, tname, n, mt, ft, ph, ks):
        """A second slice of train arrives: continue fine-tuning the n-example model on it vs
        edit the prompt (shots drawn from the new slice). Runs once the n-example model exists;
        only for the tasks in maintenance.tasks where that is set."""
        if tname not in mt.get("tasks", [tname]):
            return
        t = self.tasks[tname]
        base = os.path.join(self.out, "work", "train", "%s.ft.n%d" % (tname, n), "run", "final")
        new = t["train"][-mt["new_n"]:]  # disjoint from every fine-tuning slice (those are prefixes)
        if not self.done("%s.maint.ft" % tname):
            if not os.path.exists(os.path.join(base, "model.safetensors")):
                return  # the base model is not trained yet (or its weights are gone): later
            self.finetune(tname, len(new), dict(ft, epochs=mt.get("epochs", ft["epochs"])), ph, model=base,
                          rows=new, name="%s.maint.ft" % tname, extra={"maintenance": True, "from_n": n})
            self.cleanup_weights(os.path.join(self.out, "work", "train", "%s.maint.ft" % tname, "run", "final"))
        if os.path.isdir(base):
            self.cleanup_weights(base)
        k = mt.get("prompt_k", ks["k"][0])
        for d in range(mt.get("draws", 1)):
            sh = sample(new, k, 5000 + d)
            self.scoring_arm("%s.maint.prompt.d%d" % (tname, d), tname, "maint_prompt",
                             lambda text, sh=sh: content(t["cfg"], ph, sh, text),
                             extra={"k": k, "draw": d, "maintenance": True})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--out", help="run folder (default runs/tradeoff/<study name>)")
    ap.add_argument("--publish", help="also copy the report, plots, JSON and CSV into this folder")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from the arms done")
    ap.add_argument("--stop-after", type=float, metavar="S",
                    help="start no unit of work (arm, training piece) after S seconds; then write the report of "
                         "what ran (a rerun continues)")
    ap.add_argument("--model", help="the model file or folder instead of the config's list (recorded in study.json)")
    ap.add_argument("--check", action="store_true",
                    help="only check that the binaries, the model and the data sets resolve; run nothing")
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = json.load(f)
    if a.check:
        try:
            st = Study(a.config, tempfile.mkdtemp(prefix="gllm_tradeoff_check_"), model=a.model)
        except Skip as e:
            print("SKIP: %s" % e)
            return 77
        shutil.rmtree(st.out, ignore_errors=True)
        print("check: %s: binaries in %s, model %s (%d parameters), %s" % (
            cfg["name"], st.r.bins, st.r.model, st.r.shape.n_params,
            "; ".join("%s %d train / %d dev / %d test" % (n, len(t["train"]), len(t["dev"]), len(t["test"]))
                      for n, t in st.tasks.items())))
        return 0
    out = a.out or os.path.join(ROOT, "runs", "tradeoff", cfg["name"])
    os.makedirs(out, exist_ok=True)
    if a.model:
        cfg["model"] = [os.path.abspath(a.model)]
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    t0 = time.time()
    if not a.report_only:
        try:
            st = Study(a.config, out, model=a.model)
        except Skip as e:
            print("SKIP: %s" % e)
            return 77
        started = cost.now_utc()
        import signal
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # a stopped study still logs its time
        if a.stop_after is not None:
            st.r.stop_at = t0 + a.stop_after
        stopped = False
        try:
            st.run()
        except OutOfTime:
            stopped = True
            log("stopped after %.0f s (--stop-after %.0f): no new arm started; the same command continues" %
                (time.time() - t0, a.stop_after))
        finally:
            st.r.unlock()
            with open(os.path.join(out, "runs.jsonl"), "a") as f:
                f.write(json.dumps({"started": started, "ended": cost.now_utc(), "elapsed_s": time.time() - t0,
                                    "lock_wait_s": st.r.waited_s, "busy_s": st.r.busy_s,
                                    "lock": st.r.lock_path, "stopped": stopped}) + "\n")
    import report  # noqa: E402
    lock = os.environ.get("GLLM_BENCH_LOCK")
    lf = open(lock, "a") if lock else None
    if lf:  # the report and its plots take some CPU seconds too
        fcntl.flock(lf, fcntl.LOCK_EX)
    try:
        report.build(out, publish=a.publish)
    finally:
        if lf:
            lf.close()
    log("done in %.0f s: %s" % (time.time() - t0, os.path.join(out, "report.md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
