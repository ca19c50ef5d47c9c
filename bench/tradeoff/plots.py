"""PNG plots of a trade-off study (called by report.py): accuracy vs k with the spread, total
cost vs queries with the break-even marked, train/dev loss curves, accuracy vs cost."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def make(out, results, tasks):
    pngs = []
    for t in tasks:
        pngs += [p for p in (acc_vs_k(out, t), cost_vs_queries(out, t), loss_curves(out, t), acc_vs_cost(out, t)) if p]
    return pngs


def save(fig, out, name):
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def acc_vs_k(out, t):
    ps = [g for g in t.groups if g["type"] == "prompt"]
    if not ps:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [g["k"] for g in ps]
    x = [max(k, 0.5) for k in ks]  # k = 0 drawn at 0.5 on the log axis
    ax.errorbar(x, [g["acc"] for g in ps], yerr=[g["acc_sd"] for g in ps], fmt="o-", capsize=4,
                label="prompting: mean ± sd over phrasings (k=0) / draws")
    ax.fill_between(x, [g["acc_min"] for g in ps], [g["acc_max"] for g in ps], alpha=0.2, label="min-max")
    for g in t.groups:
        if g["type"] == "ft":
            ax.axhline(g["acc"], ls="--", lw=1, color="C%d" % (2 + g["n"] % 7), label=g["label"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(x)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("shots k")
    ax.set_ylabel("accuracy")
    ax.set_title("%s: accuracy vs shots (fine-tuned arms dashed)" % t.name)
    ax.legend(fontsize=7)
    return save(fig, out, "%s_accuracy_vs_k.png" % t.name)


def cost_vs_queries(out, t):
    rows = [r for r in t.be if r.get("vs")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    qmax = max([r["q_seconds"] for r in rows if r["q_seconds"]] + [1000]) * 3
    qs = [qmax * i / 200 for i in range(201)]
    drawn = set()
    for i, r in enumerate(rows):
        c = "C%d" % i
        ax.plot(qs, [r["ft_fixed_s"] + q * r["ft_per_query_s"] for q in qs], color=c, label="%s (accuracy %.3f)" % (r["ft"], r["ft_acc"]))
        if r["vs"] not in drawn:
            drawn.add(r["vs"])
            ax.plot(qs, [q * r["p_per_query_s"] for q in qs], color=c, ls=":", label="%s (accuracy %.3f)" % (r["vs"], r["vs_acc"]))
        if r["q_seconds"]:
            y = r["ft_fixed_s"] + r["q_seconds"] * r["ft_per_query_s"]
            ax.plot([r["q_seconds"]], [y], "kx")
            ax.annotate("%d" % r["q_seconds"], (r["q_seconds"], y), fontsize=7)
    ax.set_xlabel("queries")
    ax.set_ylabel("total seconds (training + queries), measured")
    ax.set_title("%s: total cost vs queries (x = break-even)" % t.name)
    ax.legend(fontsize=6)
    return save(fig, out, "%s_cost_vs_queries.png" % t.name)


def loss_curves(out, t):
    fts = [g for g in t.groups if g["type"] == "ft" and g.get("curve")]
    if not fts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, g in enumerate(fts):
        tr = [(c["step"], c["loss"]) for c in g["curve"] if "loss" in c and c["loss"] is not None]
        dv = [(c["step"], c["val_loss"]) for c in g["curve"] if "val_loss" in c and c["val_loss"] is not None]
        if tr:
            ax.plot(*zip(*tr), color="C%d" % i, alpha=0.5, lw=1, label="train n=%d" % g["n"])
        if dv:
            ax.plot(*zip(*dv), "o-", color="C%d" % i, label="dev n=%d" % g["n"])
        if g.get("turn") and g["turn"]["turned"]:
            ax.axvline(g["turn"]["min_step"], color="C%d" % i, ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title("%s: train vs dev loss (dotted: dev loss turned)" % t.name)
    ax.legend(fontsize=6)
    return save(fig, out, "%s_loss_curves.png" % t.name)


def acc_vs_cost(out, t, queries=1000):
    if not t.groups:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for g in t.groups:
        c = g["train_s"] + queries * g["per_query_s"]
        ax.errorbar([c], [g["acc"]], yerr=[g["acc_sd"]], fmt="s" if g["type"] == "ft" else "o", capsize=3)
        ax.annotate(g["label"], (c, g["acc"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("total seconds for %d queries (training included), measured" % queries)
    ax.set_ylabel("accuracy")
    ax.set_title("%s: accuracy vs cost" % t.name)
    return save(fig, out, "%s_accuracy_vs_cost.png" % t.name)
