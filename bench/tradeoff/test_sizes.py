#!/usr/bin/env python3
"""ctest bench/tradeoff_sizes: runs bench/tradeoff/sizes.py on two tiny models (a random-weight
tiny llama written on the fly, and the pretrained stories260K from ../shared) with gtrain and
bench_infer, and checks the results for internal consistency: the computed figures equal the
formulas (recomputed here in closed form), gllm's own FLOP count agrees with cost.py's, the
measured figures are present and positive, the measured training memory is where the analytic
model puts it, the CSV holds every figure of the JSON, and the fits table is consistent with the
device memory. Exit 77 (skipped) without ../shared.

usage: test_sizes.py BIN_DIR        (the build folder with gtrain and bench_infer)
"""
import csv
import json
import math
import os
import shutil
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cost  # noqa: E402
import sizes  # noqa: E402

SHARED = os.environ.get("GLLM_SHARED_DIR", os.path.join(HERE, "..", "..", "..", "shared"))
STORIES = os.path.join(SHARED, "assets", "models", "stories260K-hf")

failures = []


def check(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what))
    if not ok:
        failures.append(what)


def close(a, b, rel=1e-9):
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    bin_dir = sys.argv[1]
    if not os.path.isdir(STORIES):
        print("SKIP: %s not found (the shared assets folder is absent)" % STORIES)
        return 77
    for exe in ("gtrain", "bench_infer"):
        if not os.access(os.path.join(bin_dir, exe), os.X_OK):
            print("FAIL: %s not built in %s" % (exe, bin_dir))
            return 1
    tmp = tempfile.mkdtemp(prefix="test_sizes_")
    try:
        return run(bin_dir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(bin_dir, tmp):
    # decode speed is the difference of two runs' walls (1 + D tokens minus 1): D = 128 and
    # the fastest of 3 keep it well above the noise of a few ms on these tiny models
    B, T, D, P, n = 2, 64, 128, 32, 4
    cfg = {"backend": "cpu", "threads": 2,
           "train": {"batch_size": B, "seq_len": T, "steps": 3, "warmup": 1},
           "infer": {"requests": n, "prompt_tokens": P, "decode_tokens": D, "repeats": 3},
           "zero1_ranks": 2,
           "fits": {"ranks": [1, 2, 4], "train_batch_tokens": 512, "infer_kv_tokens": 1024,
                    "memory_gib": 1.0},
           "models": [{"name": "tiny-llama", "random": "tiny-llama",
                       "measure": ["train", "zero1", "infer"]},
                      {"name": "stories260K", "path": "$SHARED/assets/models/stories260K-hf"}]}
    cpath = os.path.join(tmp, "sizes_test.json")
    with open(cpath, "w") as f:
        json.dump(cfg, f)
    res = sizes.main(["--config", cpath, "--bin", bin_dir, "--out-dir", tmp, "--stem", "t",
                      "--shared", SHARED])

    # the random model writer: a file of exactly the shape's tensors, which gllm loads
    mdir = os.path.join(tmp, "m")
    nw = sizes.write_random_model(mdir, "tiny-llama", "F32")
    check(nw == sizes.count_params(mdir) == sizes.count_shape("tiny-llama"),
          "random tiny-llama: %d parameters written = counted from the file" % nw)
    with open(os.path.join(mdir, "model.safetensors"), "rb") as f:
        hn = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(hn))
        end = max(v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__")
        check(os.path.getsize(f.name) == 8 + hn + end, "safetensors size = header + data")

    by = {m["name"]: m for m in res["models"]}
    check(set(by) == {"tiny-llama", "stories260K"}, "both models in the results")
    prec = res["precision"]
    check(prec["replicated"] + prec["sharded"] == 16 and prec["weights"] == 4,
          "CPU precision: 16 B/param training, 4 B/param inference (fp32)")
    for name, m in by.items():
        check(m.get("status") == "ok", "%s: status ok" % name)
        sh = m["shape"]
        L, dattn, dkv, npar = sh["n_layers"], sh["n_heads"] * sh["head_dim"], \
            sh["n_kv_heads"] * sh["head_dim"], sh["n_params"]
        shape = cost.Shape(sh["n_layers"], sh["d_model"], sh["n_heads"], sh["n_kv_heads"],
                           sh["head_dim"], sh["d_ff"], sh["vocab"], sh["gated_mlp"], sh["tied"],
                           n_params=npar)
        tr = m["train"]
        check(tr["status"] == "ok", "%s: train ran (%s)" % (name, tr["status"]))
        tm, tc = tr["measured"], tr["computed"]
        # analytic figures = the formulas, recomputed in closed form
        act = cost.train_activation_bytes(shape, B * T, 4)
        check(close(tc["memory_bytes"]["value"], 16 * npar + act),
              "%s: computed training memory = 16 B/param x %d + activations" % (name, npar))
        fl = 6 * sh["n_matmul"] + 6 * L * dattn * (T + 1)  # 12 L d (T+1)/2: causal mean context
        check(close(tc["flops_per_token"]["value"], fl),
              "%s: computed training FLOP/token = 6N + 6 L d_attn (T+1) = %.4g" % (name, fl))
        check(close(tm["gllm_flops_per_token"]["value"], fl, 0.01),
              "%s: gtrain's own FLOP count within 1%% of cost.py's (%.4g vs %.4g)" % (
                  name, tm["gllm_flops_per_token"]["value"], fl))
        check(tm["parameters"]["value"] == npar,
              "%s: gtrain counts the same %d parameters as the file" % (name, npar))
        for k in ("step_s", "time_per_token_s", "tokens_per_s", "peak_backend_mib",
                  "optimizer_bytes_per_rank", "own_rss_mib"):
            v = tm.get(k, {}).get("value")
            check(isinstance(v, (int, float)) and v > 0 and tm[k]["kind"] == "measured",
                  "%s: train %s measured and positive (%s)" % (name, k, v))
        check(tm["tokens_per_step"]["value"] == B * T,
              "%s: every step trained %d tokens (packed full rows)" % (name, B * T))
        check(close(tm["tokens_per_s"]["value"] * tm["time_per_token_s"]["value"], 1.0, 1e-9),
              "%s: tokens/s x s/token = 1" % name)
        check(tm["optimizer_bytes_per_rank"]["value"] == 8 * npar,
              "%s: optimizer state measured = 8 B/param (m, v in fp32)" % name)
        ratio = tm["peak_backend_mib"]["value"] * sizes.MIB / tc["memory_bytes"]["value"]
        check(0.7 < ratio < 1.3, "%s: measured training memory / computed = %.3f (within 30%%)"
              % (name, ratio))
        inf = m["infer"]
        check(inf["status"] == "ok", "%s: inference ran (%s)" % (name, inf["status"]))
        im, ic = inf["measured"], inf["computed"]
        cached = n * (P + 1 + D)
        check(close(ic["memory_bytes"]["value"], 4 * npar + cached * 2 * L * dkv * 4),
              "%s: computed inference memory = 4 B/param + K,V fp32 for %d tokens" % (
                  name, cached))
        check(close(ic["prefill_flops_per_token"]["value"],
                     2 * sh["n_matmul"] + 4 * L * dattn * (P + 1) / 2),
              "%s: computed prefill FLOP/token = 2N + 4 L d_attn (P+1)/2" % name)
        check(close(ic["decode_flops_per_token"]["value"],
                     2 * sh["n_matmul"] + 4 * L * dattn * ((P + 1) + (D + 1) / 2)),
              "%s: computed decode FLOP/token = 2N + 4 L d_attn x mean context" % name)
        for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "decode_b1_tokens_per_s",
                  "peak_backend_mib", "own_rss_mib"):
            v = im.get(k, {}).get("value")
            check(isinstance(v, (int, float)) and v > 0, "%s: inference %s measured and positive "
                  "(%s)" % (name, k, v))
        check(im["peak_backend_mib"]["value"] * sizes.MIB >= 4 * npar,
              "%s: the engine's peak holds at least the fp32 weights" % name)
    z = by["tiny-llama"]["zero1"]
    check(z["status"] == "ok", "tiny-llama: ZeRO-1 over 2 ranks ran (%s)" % z["status"])
    npar = by["tiny-llama"]["shape"]["n_params"]
    zo = z["measured"]["optimizer_bytes_per_rank"]["value"]
    check(4 * npar <= zo <= 4 * npar + max(4096, npar // 256),
          "ZeRO-1: each of 2 ranks keeps half the AdamW state (%d vs %d bytes; the padding of the "
          "flat buffers to a multiple of the ranks allowed)" % (zo, 4 * npar))
    check(len(z["measured"]["peak_backend_mib_per_rank"]["value"]) == 2, "ZeRO-1: two ranks")
    shape = cost.load_shape(STORIES)
    check(close(cost.train_memory_bytes_zero1(shape, 128, 1), cost.train_memory_bytes(shape, 128)),
          "train_memory_bytes_zero1 at 1 rank = train_memory_bytes")

    # fits: the largest shape that fits is under the memory and the next one is not
    fz = res["fits"]
    mem = fz["device_memory_bytes"]["value"]
    check(close(mem, 1.0 * sizes.GIB), "fits: the configured 1 GiB device")
    names = [r["shape"] for r in fz["rows"]]
    for r in fz["ranks"]:
        k = "train_bytes_%d" % r
        big = fz["largest"]["train_zero1_%d" % r]["value"]
        i = names.index(big)
        check(fz["rows"][i][k] <= mem and (i + 1 == len(names) or fz["rows"][i + 1][k] > mem),
              "fits: %s is the largest shape trainable on %d rank(s) in 1 GiB" % (big, r))
    check(all(fz["rows"][j]["train_bytes_1"] >= fz["rows"][j]["train_bytes_2"] >=
              fz["rows"][j]["train_bytes_4"] for j in range(len(names))),
          "fits: per-rank training memory falls with the ZeRO-1 ranks")
    check(close(fz["largest"]["infer_params"]["value"], mem / 4), "fits: inference bound = mem/4")
    check(fz["largest"]["measured_largest_train"]["value"] == "stories260K",
          "fits: the largest measured training run is stories260K")

    # outputs: every JSON figure is a CSV row, tagged; the Markdown names every model; a plot
    rows = list(csv.DictReader(open(os.path.join(tmp, "t.csv"))))
    n_fig = sum(len(m[s].get(k) or {}) for m in res["models"] for s in ("train", "zero1", "infer")
                if s in m for k in ("measured", "computed")) + len(fz["largest"])
    check(len(rows) == n_fig, "CSV: one row per figure (%d)" % n_fig)
    check(all(r["kind"] in ("measured", "computed") and r["device"] and r["date"] for r in rows),
          "CSV: every row says measured or computed, device and date")
    md = open(os.path.join(tmp, "t.md")).read()
    check(all(name in md for name in by) and "ZeRO-1" in md, "Markdown: every model and ZeRO-1")
    check(os.path.getsize(os.path.join(tmp, "t.png")) > 10000, "PNG plot written")
    print("%d checks failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
