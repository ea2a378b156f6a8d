"""The leaderboard's pictures (seaborn PNGs), written byte-for-byte reproducibly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adcbench.report.tables import record_hash

BREAKDOWN = ("payload", "side", "labels", "framing")


def family(spec: str) -> str:
    """`adc:xi=0.1+quant:bits=8` -> `adc+quant`: one colour and one panel per method family."""
    return "+".join(part.split(":")[0] for part in spec.split("+"))


def _setup():  # noqa: ANN202 - matplotlib's pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams["svg.hashsalt"] = "adcbench"
    return plt, sns


def _save(fig, path: Path) -> str:  # noqa: ANN001
    # No software/date metadata: the same records give byte-identical PNGs.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def accuracy_vs_bytes(summary: pd.DataFrame, task: str, out: Path) -> str:
    """Final deployed accuracy vs bytes per training sample (log x), 95 % CI bars, Pareto frontier."""
    plt, sns = _setup()
    s = summary.assign(family=[family(m) for m in summary["method"]])
    fams = sorted(s["family"].unique())
    colors = dict(zip(fams, sns.color_palette("tab20", max(2, len(fams)))))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for fam in fams:
        g = s[s["family"] == fam].sort_values("bytes_per_sample")
        ax.errorbar(
            g["bytes_per_sample"],
            g["acc_deployed"],
            yerr=g["acc_deployed_ci95"].fillna(0),
            marker="o",
            color=colors[fam],
            label=fam,
            capsize=3,
            linewidth=1,
        )
    front = s[s["pareto"]].sort_values("bytes_per_sample")
    ax.step(
        front["bytes_per_sample"],
        front["acc_deployed"],
        where="post",
        color="black",
        linestyle="--",
        linewidth=1,
        label="Pareto frontier",
    )
    ax.set(
        xscale="log",
        xlabel="bytes per training sample, both directions (measured)",
        ylabel="final accuracy, deployment policy (mean ± 95 % CI)",
        title=f"{task}: accuracy vs bytes",
    )
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return _save(fig, out / f"{task}-accuracy-vs-bytes.png")


def curves(hist: pd.DataFrame, task: str, out: Path) -> str:
    """Accuracy vs cumulative bytes during training: one panel per method family, a line per spec."""
    plt, sns = _setup()
    h = hist.assign(family=[family(m) for m in hist["method"]], MB=hist["bytes"] / 1e6)
    fams = sorted(h["family"].unique())
    cols = min(4, len(fams))
    rows = -(-len(fams) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, fam in zip(axes.flat, fams):
        g = h[h["family"] == fam]
        methods = sorted(g["method"].unique())
        sns.lineplot(
            data=g,
            x="MB",
            y="acc",
            hue="method",
            hue_order=methods,
            errorbar=("ci", 95),
            seed=0,  # the bootstrap CI: a fixed seed keeps the PNG byte-identical
            ax=ax,
            linewidth=1.2,
            palette=sns.color_palette("husl", len(methods)),
        )
        ax.set(xscale="log", title=fam, xlabel="cumulative MB (measured)", ylabel="accuracy (deployed)")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(fams) :]:
        ax.set_visible(False)
    fig.suptitle(f"{task}: accuracy during training vs cumulative traffic")
    fig.tight_layout()
    return _save(fig, out / f"{task}-curves.png")


def breakdown(records: list[dict], kept: dict[tuple[str, int], str], task: str, out: Path) -> str:
    """Where each method's bytes go: payload / side / labels / framing, both directions, per sample."""
    plt, sns = _setup()
    rows = []
    for r in records:
        if r.get("task") != task or (record_hash(r), r.get("seed")) not in kept:
            continue
        samples = max(1, r["steps"] * r["train"]["batch_size"])
        for key in BREAKDOWN:
            n = r["bytes"]["breakdown_fwd"].get(key, 0) + r["bytes"]["breakdown_bwd"].get(key, 0)
            rows.append({"method": kept[(record_hash(r), r.get("seed"))], "part": key, "bytes": n / samples})
    df = pd.DataFrame(rows).groupby(["method", "part"], sort=True)["bytes"].mean().unstack("part").fillna(0)
    df = df[[k for k in BREAKDOWN if k in df.columns]]
    df = df.loc[df.sum(axis=1).sort_values(kind="stable").index]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(df) + 1.5))
    df.plot.barh(stacked=True, ax=ax, color=sns.color_palette("Set2", len(df.columns)), width=0.8)
    ax.set(xlabel="bytes per training sample (mean over seeds)", ylabel="", title=f"{task}: byte breakdown")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / f"{task}-breakdown.png")


__all__ = ["accuracy_vs_bytes", "breakdown", "curves", "family"]
