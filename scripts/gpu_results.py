#!/usr/bin/env python3
"""Turn what scripts/gpu_check.sh left in its output folder (summary.md and the
bench tables), once copied back to the development machine, into one results
file: bench/results/gpu_<date>.md with the device and driver line, every step's
verdict, each bench table, and the goals of issue 13 read off the tables
(GEMM vs cuBLASLt >= 1.0x, attention vs PyTorch SDPA >= 1.0x, AdamW >= 90% of the
copy bandwidth).

When the folder holds sizes.json (the size sweep of issue 12, bench/tradeoff/sizes.py), it is
rendered beside it as bench/results/sizes_<device>_<date>.{json,csv,md,png}
(bench/tradeoff/sizes_report.py) and its Markdown section is included. When it holds
tradeoff_gpu.tar.gz (the trade-off study of issue 12), the study's run folder is unpacked into
bench/results/tradeoff/gpu_<date>/ and its report and plots are rebuilt there
(bench/tradeoff/report.py); the results file links it.

usage: scripts/gpu_results.py OUT_FOLDER [--date YYYY-MM-DD] [--dest bench/results]
       prints the paths it wrote; exits 1 when summary.md is missing.
"""
import argparse
import datetime
import math
import os
import re
import sys


def table_rows(text):
    """The rows of the first markdown table in text: header names and cell lists."""
    lines = [l.strip() for l in text.splitlines()]
    for i, l in enumerate(lines):
        if l.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
            head = [c.strip() for c in l.strip("|").split("|")]
            rows = []
            for r in lines[i + 2:]:
                if not r.startswith("|"):
                    break
                rows.append([c.strip() for c in r.strip("|").split("|")])
            return head, rows
    return [], []


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def gemm_goal(text):
    head, rows = table_rows(text)
    if "auto ratio" not in head:
        return "GEMM vs cuBLASLt: no 'auto ratio' column in bench_matmul.md"
    k = head.index("auto ratio")
    ratios = [num(r[k]) for r in rows if len(r) > k]
    ratios = [x for x in ratios if x]
    if not ratios:
        return "GEMM vs cuBLASLt: no measured rows"
    g = geomean(ratios)
    worst = min(ratios)
    verdict = "met" if g >= 1.0 else "NOT met"
    return (f"GEMM vs cuBLASLt (auto path, cuBLASLt time / gllm time): geometric mean "
            f"{g:.3f}x over {len(ratios)} GEMMs, worst {worst:.3f}x; goal >= 1.0x (aim 1.05x): {verdict}")


def attention_goal(text):
    head, rows = table_rows(text)
    col = "gllm/SDPA speed"
    if col not in head:
        return "attention vs SDPA: no table in bench_attention.md"
    k = head.index(col)
    ratios = [num(r[k]) for r in rows if len(r) > k and num(r[k])]
    if not ratios:
        return "attention vs SDPA: no measured rows"
    worst = min(ratios)
    verdict = "met" if worst >= 1.0 else "NOT met"
    return (f"attention vs PyTorch SDPA (SDPA time / gllm time): {len(ratios)} rows, "
            f"geometric mean {geomean(ratios):.3f}x, worst {worst:.3f}x; goal >= 1.0x: {verdict}")


def adamw_goal(text):
    head, rows = table_rows(text)
    if "kernel" not in head or "ratio" not in head:
        return "AdamW vs copy: no table in bench_kernels.md"
    kk, kr = head.index("kernel"), head.index("ratio")
    ratios = [num(r[kr]) for r in rows if len(r) > kr and "adamw" in r[kk].lower() and num(r[kr])]
    if not ratios:
        return "AdamW vs copy: no AdamW row in bench_kernels.md"
    worst = min(ratios)
    verdict = "met" if worst >= 0.9 else "NOT met"
    return (f"AdamW bandwidth / copy bandwidth: {', '.join(f'{x:.0%}' for x in ratios)}; "
            f"goal >= 90%: {verdict}")


def infer_goal(text):
    m = re.search(r"^- goals \(issue 9\): (.*)$", text, re.M)
    return ("inference (issue 9): " + m.group(1) if m
            else "inference vs transformers: no section in bench_train.md (bench-infer did not run)")


def train_goal(text):
    m = re.search(r"^- goals \(issue 11\): (.*)$", text, re.M)
    return ("fine-tuning (issue 11): " + m.group(1) if m else "fine-tuning vs PyTorch: no section "
            "in bench_train.md (bench-train-full did not run)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--date", default=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    ap.add_argument("--dest", default=os.path.join(os.path.dirname(__file__), "..", "bench", "results"))
    a = ap.parse_args()
    sp = os.path.join(a.folder, "summary.md")
    if not os.path.exists(sp):
        sys.exit(f"gpu_results: {sp} not found")
    summary = open(sp).read()
    benches = {}
    for name in ("bench_matmul", "bench_attention", "bench_kernels", "bench_train"):
        p = os.path.join(a.folder, name + ".md")
        if os.path.exists(p):
            benches[name] = open(p).read()

    verdict_head, verdict_rows = table_rows(summary)
    counts = {}
    for r in verdict_rows:
        v = r[1].split(" ")[0].lower() if len(r) > 1 else "?"
        counts[v] = counts.get(v, 0) + 1
    device = re.search(r"^- device: (.*)$", summary, re.M)

    out = [f"# GPU run {a.date}", ""]
    out.append(f"device (name, driver, compute capability, memory): {device.group(1) if device else '?'}")
    out.append("")
    out.append("Made by scripts/gpu_results.py from the output of scripts/gpu_check.sh "
               "(bundle from scripts/gpu_bundle.sh).")
    out.append("")
    out.append("## Goals (issue 13)")
    out.append("")
    out.append("- " + (gemm_goal(benches["bench_matmul"]) if "bench_matmul" in benches
                       else "GEMM vs cuBLASLt: no bench_matmul.md (bench did not run)"))
    out.append("- " + (attention_goal(benches["bench_attention"]) if "bench_attention" in benches
                       else "attention vs SDPA: no bench_attention.md (bench did not run)"))
    out.append("- " + (adamw_goal(benches["bench_kernels"]) if "bench_kernels" in benches
                       else "AdamW vs copy: no bench_kernels.md (bench did not run)"))
    out.append("- " + train_goal(benches.get("bench_train", "")))
    out.append("- " + infer_goal(benches.get("bench_train", "")))
    out.append("- steps: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    out.append("")
    out.append("## Check summary")
    out.append("")
    out.append(summary.strip().replace("# gllm GPU check", "", 1).strip())
    for name, text in benches.items():
        out.append("")
        out.append(f"## {name}")
        out.append("")
        body = re.sub(r"^# ", "### ", text.strip(), flags=re.M)
        out.append(body)
    os.makedirs(a.dest, exist_ok=True)
    sizes_json = os.path.join(a.folder, "sizes.json")
    if os.path.exists(sizes_json):
        out.append("")
        out.extend(sizes_section(sizes_json, a.dest, a.date))
    tarball = os.path.join(a.folder, "tradeoff_gpu.tar.gz")
    if os.path.exists(tarball):
        out.append("")
        out.extend(tradeoff_section(tarball, a.dest, a.date))
    path = os.path.join(a.dest, f"gpu_{a.date}.md")
    open(path, "w").write("\n".join(out) + "\n")
    print(os.path.normpath(path))


def sizes_section(path, dest, date):
    """Render the size sweep's JSON into dest (sizes_<device>_<date>.*) and return its Markdown
    section (a level-2 heading) for the GPU results file."""
    import json
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench",
                                    "tradeoff"))
    import sizes_report
    try:
        res = json.load(open(path))
    except ValueError as e:  # (the sweep writes it atomically; this is a damaged copy)
        return ["## Size sweep", "", f"sizes.json could not be read: {e}"]
    stem = f"sizes_{res['device']['label']}_{date}"
    made = sizes_report.write_outputs(res, dest, stem)
    for p in made:
        print(os.path.normpath(p))
    md = open(os.path.join(dest, stem + ".md")).read()
    return [md.strip(), "", f"(also {stem}.json / .csv / .png in this folder)"]


def tradeoff_section(tarball, dest, date):
    """Unpack the trade-off study's run folder into dest/tradeoff/gpu_<date>/, rebuild its report
    and plots, and return a section that links it with the claims table."""
    import shutil
    import tarfile
    import tempfile
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench",
                                    "tradeoff"))
    import report
    tmp = tempfile.mkdtemp(prefix="gllm_tradeoff_gpu_")
    with tarfile.open(tarball) as t:
        for m in t.getmembers():  # only plain files and folders below tradeoff_gpu/
            if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name.split("/"):
                return ["## Trade-off study (issue 12)", "", f"{tarball}: unexpected member {m.name!r}"]
        t.extractall(tmp)
    src = os.path.join(tmp, "tradeoff_gpu")
    folder = os.path.join(dest, "tradeoff", f"gpu_{date}")
    report.build(src, publish=folder)
    shutil.rmtree(tmp, ignore_errors=True)
    print(os.path.normpath(os.path.join(folder, "report.md")))
    md = open(os.path.join(folder, "report.md")).read()
    claims = md[md.index("## Claims"):md.index("## Headline")] if "## Headline" in md else ""
    return ["## Trade-off study (issue 12)", "", f"Report: tradeoff/gpu_{date}/report.md", "",
            re.sub(r"^## ", "### ", claims.strip(), flags=re.M)]


if __name__ == "__main__":
    main()
