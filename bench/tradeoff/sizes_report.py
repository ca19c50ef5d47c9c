"""Outputs of the size sweep (bench/tradeoff/sizes.py): the CSV (one row per figure), the
Markdown section the trade-off report includes, and the PNG plot (memory vs parameters, measured
points over the analytic lines; time per token of training, prefill and decode). Rendered from
the sweep's JSON alone, so that a GPU run can bring back only the JSON:

    python3 bench/tradeoff/sizes_report.py RESULTS.json [--out-dir DIR] [--stem NAME]
"""
import argparse
import csv
import json
import os
import sys

MIB = 1024.0 * 1024.0
GIB = 1024.0 * MIB


def val(f):
    return f["value"] if isinstance(f, dict) else None


def flat_rows(res):
    """One CSV row per figure: model, section, metric, value, unit, kind, device, date, note."""
    rows = []
    for m in res["models"]:
        for sec in ("train", "zero1", "infer"):
            r = m.get(sec)
            if not r:
                continue
            for kind in ("measured", "computed"):
                for k, f in (r.get(kind) or {}).items():
                    rows.append({"model": m["name"], "params": m.get("shape", {}).get("n_params"),
                                 "section": sec, "metric": k, "value": f["value"],
                                 "unit": f["unit"], "kind": f["kind"], "device": f["device"],
                                 "date": f["date"], "note": f["note"]})
    for k, f in res["fits"]["largest"].items():
        rows.append({"model": "", "params": "", "section": "fits", "metric": k,
                     "value": f["value"], "unit": f["unit"], "kind": f["kind"],
                     "device": f["device"], "date": f["date"], "note": f["note"]})
    return rows


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return "%.*g" % (digits, x)
    return "%.*g" % (max(digits, len(str(int(abs(x))))), x)


def rss(meas):
    """The host peak: /usr/bin/time's when measured, else the program's own report."""
    v = val(meas.get("max_rss_mib"))
    return v if v else val(meas.get("own_rss_mib"))


def human_params(n):
    return "%.2fM" % (n / 1e6) if n < 1e9 else "%.2fB" % (n / 1e9)


def markdown(res, name):
    dev = res["device"]
    L = ["## Resource intensity by model size (%s)" % dev["label"], "",
         "Made by `bench/tradeoff/sizes.py` (config `%s`) at gllm commit %s on %s, %s UTC; "
         "backend `%s`. %s." % (res.get("config_path", "?"), res.get("commit", "?"), dev["name"],
                                res["date"], res["backend"], res["quiet"]),
         "Every figure in %s.json carries its kind (measured / computed), device and time; "
         "here *m* = measured, *c* = computed (bench/tradeoff/cost.py). Precision of gllm on this "
         "backend: %s." % (name, res["precision"]["note"]), "",
         "### Fine-tuning (full, AdamW) against inference, per model", "",
         "| model | params | train ms/token *m* | train peak MiB *m* (backend / RSS) | "
         "train MiB *c* | *m*/*c* | prefill tok/s *m* | decode tok/s *m* (batch n / 1) | "
         "infer peak MiB *m* (backend / RSS) | infer MiB *c* | *m*/*c* |",
         "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for m in res["models"]:
        if "shape" not in m:
            L.append("| %s | - | %s |  |  |  |  |  |  |  |  |" % (m["name"], m.get("status")))
            continue
        tr, inf = m.get("train") or {}, m.get("infer") or {}
        tm, tc = tr.get("measured") or {}, tr.get("computed") or {}
        im, ic = inf.get("measured") or {}, inf.get("computed") or {}
        row = [m["name"], human_params(m["shape"]["n_params"])]
        if tr.get("status") == "ok":
            pb, pc = val(tm["peak_backend_mib"]), val(tc["memory_bytes"]) / MIB
            row += [fmt(val(tm["time_per_token_s"]) * 1e3),
                    "%s / %s" % (fmt(pb), fmt(rss(tm))), fmt(pc),
                    "%.2f" % (pb / pc)]
        else:
            row += [tr.get("status", "not run"), "", fmt(val(tc.get("memory_bytes")) / MIB
                                                         if tc else None), ""]
        if inf.get("measured"):
            pb = val(im.get("peak_backend_mib"))
            pc = val(ic["memory_bytes"]) / MIB
            row += [fmt(val(im.get("prefill_tokens_per_s"))),
                    "%s / %s" % (fmt(val(im.get("decode_tokens_per_s"))),
                                 fmt(val(im.get("decode_b1_tokens_per_s")))),
                    "%s / %s" % (fmt(pb), fmt(rss(im))), fmt(pc),
                    "%.2f" % (pb / pc) if pb else "-"]
        else:
            row += [inf.get("status", "not run"), "", "", "", ""]
        L.append("| " + " | ".join(row) + " |")
    L += ["", "Training: gtrain, `steps` optimizer steps of batch x seq_len packed tokens, the "
          "median step after the warm-up step(s); peak *m* backend = gtrain's own `peak_mem_mib` "
          "(the backend's buffers), RSS = `/usr/bin/time -v`'s maximum resident set (where the "
          "machine has it; else the program's own report). Inference: `bench_infer` (the engine: "
          "paged KV cache, continuous batching, greedy), n prompts of P random token ids; prefill "
          "= one token each (tokens/s = prompt tokens / wall), decode = D more tokens each at batch "
          "n and at batch 1, decode time = the difference of the two runs' walls (model loading is "
          "outside the timed part); the fastest of the repeats; peak *m* backend = the engine's "
          "`peak_bytes` with a KV budget of exactly what the requests need (the rest above the "
          "computed line is the engine's one-step workspace: logits and activations of up to "
          "max_batch_tokens tokens). \"-\": not measured, or not resolved (a decode run not "
          "measurably slower than its prefill run: too few decode steps for a model that small).",
          "",
          "| model | train: batch x seq_len, steps (warm-up) | inference: n x P, D, repeats |",
          "|---|---|---|"]
    for m in res["models"]:
        tr, inf = (m.get("train") or {}).get("settings"), (m.get("infer") or {}).get("settings")
        if tr or inf:
            L.append("| %s | %s | %s |" % (
                m["name"], "%d x %d, %d (%d)" % (tr["batch_size"], tr["seq_len"], tr["steps"],
                                                 tr["warmup_steps"]) if tr else "-",
                "%d x %d, %d, %d" % (inf["requests"], inf["prompt_tokens"], inf["decode_tokens"],
                                     inf["repeats"]) if inf else "-"))
    L.append("")
    L += ["### FLOPs per token (computed) and the rate achieved (measured time)", "",
          "| model | train FLOP/token *c* (cost.py / gtrain) | train GFLOP/s | prefill FLOP/token "
          "*c* | prefill GFLOP/s | decode FLOP/token *c* | decode GFLOP/s (batch n) |",
          "|---|--:|--:|--:|--:|--:|--:|"]
    for m in res["models"]:
        tr, inf = m.get("train") or {}, m.get("infer") or {}
        if "shape" not in m or tr.get("status") != "ok":
            continue
        tm, tc = tr["measured"], tr["computed"]
        im, ic = inf.get("measured") or {}, inf.get("computed") or {}
        fl = val(tc["flops_per_token"])
        row = [m["name"], "%s / %s" % (fmt(fl), fmt(val(tm["gllm_flops_per_token"]))),
               fmt(fl * val(tm["tokens_per_s"]) / 1e9)]
        for k, kt in (("prefill_flops_per_token", "prefill_tokens_per_s"),
                      ("decode_flops_per_token", "decode_tokens_per_s")):
            f = val(ic.get(k))
            r = val(im.get(kt))
            row += [fmt(f), fmt(f * r / 1e9) if f and r else "-"]
        L.append("| " + " | ".join(row) + " |")
    z = [m for m in res["models"] if (m.get("zero1") or {}).get("status") == "ok"]
    if z:
        L += ["", "### ZeRO-1, measured (gtrain --ranks R, \"zero1\": true)", "",
              "| model | ranks | optimizer bytes/rank *m* | *c* | peak MiB per rank *m* | per rank "
              "MiB *c* | ms/token (all ranks) *m* |", "|---|--:|--:|--:|--:|--:|--:|"]
        for m in z:
            zz = m["zero1"]
            zm, zc = zz["measured"], zz["computed"]
            L.append("| %s | %d | %s | %s | %s | %s | %s |" % (
                m["name"], zz["settings"]["ranks"], fmt(val(zm["optimizer_bytes_per_rank"])),
                fmt(val(zc["optimizer_bytes_per_rank"])),
                " / ".join(fmt(x) for x in val(zm["peak_backend_mib_per_rank"])),
                fmt(val(zc["memory_bytes"]) / MIB), fmt(val(zm["time_per_token_s"]) * 1e3)))
    fz = res["fits"]
    lg = fz["largest"]
    mem = val(fz["device_memory_bytes"])
    L += ["", "### The largest model each approach fits (%.1f GiB: %s)" % (
        mem / GIB, fz["device_memory_bytes"]["note"]), "",
        "Computed over reference shapes: training with a micro-batch of %d tokens, inference "
        "with KV for %d tokens; bytes per parameter as above. Measured: the largest model of this "
        "sweep that ran%s." % (fz["train_batch_tokens"], fz["infer_kv_tokens"],
                               ", and the smallest that failed for memory" if
                               val(lg["measured_oom_train"]) or val(lg["measured_oom_infer"])
                               else " (none failed for memory)"), "",
        "| approach | devices | largest reference shape *c* | parameter bound *c* | largest run *m* |"
        " smallest out of memory *m* |", "|---|--:|---|--:|---|---|"]
    for r in fz["ranks"]:
        L.append("| full fine-tuning (AdamW)%s | %d | %s | %s | %s | %s |" % (
            ", ZeRO-1" if r > 1 else "", r, val(lg["train_zero1_%d" % r]) or "none",
            human_params(val(lg["train_params_%d" % r])),
            (val(lg["measured_largest_train"]) or "-") if r == 1 else "",
            (val(lg["measured_oom_train"]) or "-") if r == 1 else ""))
    L.append("| inference | 1 | %s | %s | %s | %s |" % (
        val(lg["infer"]) or "none", human_params(val(lg["infer_params"])),
        val(lg["measured_largest_infer"]) or "-", val(lg["measured_oom_infer"]) or "-"))
    L += ["", "Per-device memory of the reference shapes (GiB, computed):", "",
          "| shape | params | inference | " + " | ".join(
              "train, %d rank%s" % (r, "s" if r > 1 else "") for r in fz["ranks"]) + " |",
          "|---|--:|--:|" + "--:|" * len(fz["ranks"])]
    for row in fz["rows"]:
        L.append("| %s | %s | %.2f | %s |" % (
            row["shape"], human_params(row["n_params"]), row["infer_bytes"] / GIB,
            " | ".join("%.2f" % (row["train_bytes_%d" % r] / GIB) for r in fz["ranks"])))
    L += ["", "![memory and time per token by model size](%s.png)" % name, ""]
    return "\n".join(L)


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    models = [m for m in res["models"] if "shape" in m]
    if not models:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    p = res["precision"]
    lo = min(m["shape"]["n_params"] for m in models) / 2
    hi = max(max(m["shape"]["n_params"] for m in models) * 2,
             max(r["n_params"] for r in res["fits"]["rows"]))
    xs = [lo * (hi / lo) ** (k / 50) for k in range(51)]
    tb = p["replicated"] + p["sharded"]
    a.plot(xs, [x * tb / MIB for x in xs], "C0--", lw=1,
           label="training, weights+grads+AdamW only: %g B/param" % tb)
    a.plot(xs, [x * p["weights"] / MIB for x in xs], "C1--", lw=1,
           label="inference, weights only: %g B/param" % p["weights"])
    mem = val(res["fits"]["device_memory_bytes"])
    a.axhline(mem / MIB, color="k", lw=0.8, ls=":")
    a.text(lo, mem / MIB * 1.15, "device memory %.0f GiB" % (mem / GIB), fontsize=8)
    for what, col in (("train", "C0"), ("infer", "C1")):
        pts_c, pts_m = [], []
        for m in models:
            r = m.get(what) or {}
            if r.get("computed"):
                pts_c.append((m["shape"]["n_params"], val(r["computed"]["memory_bytes"]) / MIB))
            if r.get("status") == "ok" and r.get("measured", {}).get("peak_backend_mib"):
                pts_m.append((m["shape"]["n_params"], val(r["measured"]["peak_backend_mib"])))
        if pts_c:
            a.plot(*zip(*sorted(pts_c)), col + "-", marker="o", mfc="none", lw=1,
                   label="%s, computed (with %s)" % (
                       "training" if what == "train" else "inference",
                       "activations" if what == "train" else "KV cache"))
        if pts_m:
            a.plot(*zip(*sorted(pts_m)), col + "o", ms=7,
                   label="%s, measured peak (backend)" % (
                       "training" if what == "train" else "inference"))
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("parameters")
    a.set_ylabel("peak memory (MiB)")
    a.set_title("memory vs parameters (%s)" % res["device"]["label"])
    a.legend(fontsize=7)
    for key, lab, col in (("train", "training (fwd+bwd+AdamW)", "C0"),
                          ("prefill", "prefill", "C2"), ("decode", "decode, batch n", "C1"),
                          ("decode_b1", "decode, batch 1", "C3")):
        pts = []
        for m in models:
            if key == "train":
                r = (m.get("train") or {}).get("measured") or {}
                v = val(r.get("time_per_token_s"))
            else:
                r = (m.get("infer") or {}).get("measured") or {}
                v = val(r.get(key + "_time_per_token_s"))
            if v:
                pts.append((m["shape"]["n_params"], v * 1e3))
        if pts:
            b.plot(*zip(*sorted(pts)), "-o", color=col, label=lab + ", measured")
    b.set_xscale("log")
    b.set_yscale("log")
    b.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    b.set_xlabel("parameters")
    b.set_ylabel("ms per token")
    b.set_title("time per token (%s)" % res["device"]["label"])
    b.legend(fontsize=7)
    fig.suptitle("gllm resource intensity by model size, %s, %s" % (
        res["device"]["name"][:70], res["date"][:10]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(res, out_dir, stem):
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, stem)
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    rows = flat_rows(res)
    with open(base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["model", "params", "section", "metric", "value", "unit",
                                          "kind", "device", "date", "note"])
        w.writeheader()
        for r in rows:
            r = dict(r)
            if isinstance(r["value"], list):
                r["value"] = " ".join(str(x) for x in r["value"])
            w.writerow(r)
    made = [base + ".json", base + ".csv"]
    try:
        if plot(res, base + ".png"):
            made.append(base + ".png")
    except ImportError as e:  # no matplotlib on the machine: the tables still stand
        print("sizes: no plot (%s)" % e, file=sys.stderr)
    with open(base + ".md", "w") as f:
        f.write(markdown(res, stem) + "\n")
    made.append(base + ".md")
    return made


def main(argv=None):
    ap = argparse.ArgumentParser(description="render a size sweep's JSON")
    ap.add_argument("json")
    ap.add_argument("--out-dir", help="default: beside the JSON")
    ap.add_argument("--stem", help="default: the JSON's name without .json")
    a = ap.parse_args(argv)
    with open(a.json) as f:
        res = json.load(f)
    stem = a.stem or os.path.basename(a.json)[:-5]
    for p in write_outputs(res, a.out_dir or os.path.dirname(os.path.abspath(a.json)), stem):
        print(p)


if __name__ == "__main__":
    sys.exit(main())
