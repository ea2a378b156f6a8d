"""Time to accuracy over modelled links: a leaderboard section per task, replayed from the records.

Each completed record's history is replayed under each preset by the link model
(adcbench.transport.link; docs/transport.md): the virtual time at which the accuracy under the method's
deployment policy (as in the leaderboard's tables) first reaches the task's target. The target is `TARGET_FRACTION` of the best mean final accuracy
among the task's configurations, so every task has one that some run reaches. Per configuration
the table gives the mean over seeds ("never" where a seed did not reach it)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from adcbench.report.tables import POLICY_COLUMN, deployment_policy
from adcbench.transport.link import PRESETS, Link, time_to_accuracy, timeline

LEADERBOARD_LINKS = ("nbiot", "lte", "wifi", "5g", "datacenter")
TARGET_FRACTION = 0.9


def _newest_per_seed(records: list[dict[str, Any]], task: str) -> dict[str, list[dict[str, Any]]]:
    """Completed runs of the task by method spec, the newest record per (configuration, seed)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        if r.get("task") != task or r.get("status") != "completed" or not r.get("history"):
            continue
        key = (r["config_hash"], r["seed"])
        created = r.get("provenance", {}).get("created", "")
        if key not in best or created >= best[key].get("provenance", {}).get("created", ""):
            best[key] = r
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in best.values():
        by_method.setdefault(r["method"], []).append(r)
    return by_method


def _fmt(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "never"
    for unit, scale in (("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.1f} {unit}"
    return f"{seconds:.1f} s"


def _key(method: str) -> str:
    """The history column of the method's deployment policy."""
    return POLICY_COLUMN[deployment_policy(method)]


def target_for(by_method: dict[str, list[dict[str, Any]]]) -> float:
    finals = [sum(r["final"][_key(m)] or 0 for r in runs) / len(runs) for m, runs in by_method.items()]
    return round(TARGET_FRACTION * max(finals), 2) if finals else 0.0


def link_section(
    records: list[dict[str, Any]],
    task: str,
    plots_dir: Path | None,
    md_dir: Path = Path("."),
    links: tuple[str, ...] = LEADERBOARD_LINKS,
) -> list[str]:
    """Markdown lines: time to the target accuracy per method and link preset, and the plot
    (linked relative to `md_dir`, where the markdown lives)."""
    by_method = _newest_per_seed(records, task)
    if not by_method:
        return []
    target, presets = target_for(by_method), [PRESETS[name] for name in links]
    lines = [
        f"### {task}: time to {target:.0%} accuracy over modelled links",
        "",
        "Virtual time (measured compute + modelled link) from each run's logged traffic; presets and "
        "their sources in docs/transport.md; `adcbench replay` prints the timelines.",
        "",
        "| method | " + " | ".join(f"{p.name} ({p.spec()})" for p in presets) + " |",
        "|---|" + "---|" * len(presets),
    ]
    for method in sorted(by_method):
        cells = []
        for link in presets:
            times = [time_to_accuracy(r, link, target, _key(method)) for r in by_method[method]]
            cells.append("never" if None in times else _fmt(sum(t for t in times if t is not None) / len(times)))
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    if plots_dir is not None:
        path = _plot(by_method, presets, task, target, plots_dir)
        lines += ["", f"![{task} accuracy vs time]({os.path.relpath(path.resolve(), md_dir.resolve())})"]
    return [*lines, ""]


def _plot(
    by_method: dict[str, list[dict[str, Any]]], presets: list[Link], task: str, target: float, plots_dir: Path
) -> Path:
    """Accuracy against virtual time, one panel per preset, one line per method (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(presets), figsize=(4.2 * len(presets), 3.8), squeeze=False)
    for ax, link in zip(axes[0], presets):
        for method in sorted(by_method):
            key = _key(method)
            rows = [row for row in timeline(by_method[method][0], link) if row[key] is not None]
            ax.plot([r["time_s"] for r in rows], [r[key] for r in rows], label=method, linewidth=1.1)
        ax.axhline(target, color="grey", linestyle=":", linewidth=0.8)
        ax.set(
            xscale="log", xlabel="virtual time (s)", ylabel="test accuracy (deployed)", title=f"{task} over {link.name}"
        )
    axes[0][-1].legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    path = plots_dir / f"{task}-time.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
