"""The leaderboard's numbers: runs, per-configuration summaries, equal bytes, equal steps, headlines.

Everything here is a pure function of the run records, so the leaderboard is regenerable and
deterministic: the same records always give the same tables (sorted, rounded the same way).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from adcbench.core.records import config_hash
from adcbench.train.config import POLICY_KEY
from adcbench.train.identity import identity_of_record

# Fractions of `none`'s final accuracy whose byte cost the leaderboard reports.
TARGET_FRACTIONS = (0.90, 0.95, 0.99)
POLICY_COLUMN = POLICY_KEY


@functools.cache  # one pipeline build per spec, not per record and row
def deployment_policy(spec: str) -> str:
    """The evaluation policy a method is deployed with (the registry's `deployment_policy`): a
    composition is deployed compressed as soon as one stage is (a learned codec's server never sees
    raw activations)."""
    from adcbench.core.pipeline import Pipeline

    try:
        return Pipeline.from_spec(spec).deployment_policy
    except Exception:  # noqa: BLE001 -- not buildable here: read the registered classes instead
        pass
    from adcbench.core.method import METHODS
    from adcbench.core.params import parse_spec

    try:  # e.g. a method whose optional extra is not installed on the machine making the leaderboard
        classes = [METHODS.get(name) for name, _ in parse_spec(spec) if name in METHODS.names()]
    except Exception:  # noqa: BLE001 -- no longer registered: the paper's default policy
        return "raw"
    return "compressed" if any(getattr(c, "deployment_policy", "raw") == "compressed" for c in classes) else "raw"


def record_hash(r: dict[str, Any]) -> str:
    """The configuration hash recomputed from the identity a record carries, so records written
    before and after a change in what the hash covers group together (docs/sweeps.md)."""
    if r.get("stages") is None:  # not a full record (hand-made or truncated): trust its own hash
        return str(r.get("config_hash"))
    return config_hash(identity_of_record(r))


def method_label(r: dict[str, Any], common_init: str | None = "") -> str:
    """The method as the tables show it: the spec, plus the compute precision unless fp32, so a
    bf16 run (whose `none` sends half the bytes) is never averaged with, or baselined on, fp32;
    plus the init where it is not the task's usual one (`none [scratch]` beside warm starts)."""
    precision = (r.get("train") or {}).get("precision", "fp32")
    label = r["method"] if precision == "fp32" else f"{r['method']} @{precision}"
    init = (r.get("model") or {}).get("init")
    return label if common_init == "" or init == common_init else f"{label} [{init}]"


def common_inits(records: list[dict[str, Any]]) -> dict[str, str | None]:
    """Per task, the init most completed runs used (ties: the first by name)."""
    counts: dict[str, Counter[str | None]] = {}
    for r in records:
        if r.get("status") == "completed":
            counts.setdefault(r["task"], Counter())[(r.get("model") or {}).get("init")] += 1
    return {t: min(c.items(), key=lambda kv: (-kv[1], str(kv[0])))[0] for t, c in counts.items()}


def runs_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per completed run; a re-run of the same configuration and seed replaces the older."""
    rows = []
    inits = common_inits(records)
    for r in records:
        if r.get("status") != "completed" or not r.get("history"):
            continue
        final, b = r["final"], r["bytes"]
        bf, bb = b.get("breakdown_fwd", {}), b.get("breakdown_bwd", {})
        total = max(1, b["fwd"] + b["bwd"])
        rows.append(
            {
                "task": r["task"],
                "method": method_label(r, inits.get(r["task"], "")),
                "config_hash": record_hash(r),
                "seed": r["seed"],
                "acc": final.get("acc"),
                "acc_compressed": final.get("acc_compressed"),
                "steps": r["steps"],
                "epochs": final.get("epoch"),
                "fwd_per_sample": b["per_sample_fwd"],
                "bwd_per_sample": b["per_sample_bwd"],
                "side_share": (bf.get("side", 0) + bb.get("side", 0)) / total,
                "labels_share": (bf.get("labels", 0) + bb.get("labels", 0)) / total,
                "total_MB": (b["fwd"] + b["bwd"]) / 1e6,
                "wall_s": r.get("wall_s"),
                "init": (r.get("model") or {}).get("init"),
                "created": (r.get("provenance") or {}).get("created", ""),
            }
        )
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["created", "config_hash", "seed"], kind="stable")
        df = df.drop_duplicates(["config_hash", "seed"], keep="last").reset_index(drop=True)
    return df


def ci95(values: pd.Series | list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean: Student t with n-1 degrees of freedom."""
    v = pd.Series(values, dtype=float).dropna()
    if len(v) < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method, configuration): means over seeds, CIs, ξ_m, policy, Pareto flag."""
    groups = runs.groupby(["task", "method", "config_hash"], sort=True)
    out = groups.agg(
        seeds=("seed", "nunique"),
        acc=("acc", "mean"),
        acc_compressed=("acc_compressed", "mean"),
        fwd_per_sample=("fwd_per_sample", "mean"),
        bwd_per_sample=("bwd_per_sample", "mean"),
        side_share=("side_share", "mean"),
        labels_share=("labels_share", "mean"),
        steps=("steps", "mean"),
        epochs=("epochs", "mean"),
        total_MB=("total_MB", "mean"),
        wall_s=("wall_s", "mean"),
        init=("init", "first"),
    ).reset_index()
    out["acc_ci95"] = [ci95(g["acc"]) for _, g in groups]
    out["acc_compressed_ci95"] = [ci95(g["acc_compressed"]) for _, g in groups]
    out["policy"] = [deployment_policy(m) for m in out["method"]]
    other = {"raw": "compressed", "compressed": "raw"}
    out["acc_deployed"] = [row[POLICY_COLUMN[row["policy"]]] for _, row in out.iterrows()]
    out["acc_deployed_ci95"] = [row[POLICY_COLUMN[row["policy"]] + "_ci95"] for _, row in out.iterrows()]
    out["acc_other"] = [row[POLICY_COLUMN[other[row["policy"]]]] for _, row in out.iterrows()]
    out["xi_measured"] = _xi_measured(out)
    out["bytes_per_sample"] = out["fwd_per_sample"] + out["bwd_per_sample"]
    out["pareto"] = _pareto(out)
    return out.sort_values(
        ["task", "xi_measured", "acc_deployed", "method"], ascending=[True, True, False, True], kind="stable"
    ).reset_index(drop=True)


def _xi_measured(out: pd.DataFrame) -> list[float]:
    """The paper's ξ_m from measured bytes: ½(fwd/fwd_none + bwd/bwd_none), `none` on the same task."""
    base = out[out["method"] == "none"].groupby("task")[["fwd_per_sample", "bwd_per_sample"]].mean()
    xi = []
    for _, row in out.iterrows():
        if row["task"] not in base.index:
            xi.append(float("nan"))
            continue
        b = base.loc[row["task"]]
        xi.append(0.5 * (row["fwd_per_sample"] / b["fwd_per_sample"] + row["bwd_per_sample"] / b["bwd_per_sample"]))
    return xi


def _pareto(out: pd.DataFrame) -> list[bool]:
    """Rows no other row of the same task beats on both deployed accuracy and bytes per sample."""
    flags = []
    for _, row in out.iterrows():
        same = out[out["task"] == row["task"]]
        dominated = (
            (same["acc_deployed"] >= row["acc_deployed"])
            & (same["bytes_per_sample"] <= row["bytes_per_sample"])
            & ((same["acc_deployed"] > row["acc_deployed"]) | (same["bytes_per_sample"] < row["bytes_per_sample"]))
        )
        flags.append(not bool(dominated.any()))
    return flags


def history_table(records: list[dict[str, Any]], runs: pd.DataFrame) -> pd.DataFrame:
    """Every evaluation of every kept run: cumulative measured bytes (both ways) -> accuracy."""
    keep = dict(zip(zip(runs["config_hash"], runs["seed"], runs["created"]), runs["method"])) if len(runs) else {}
    rows = []
    for r in records:
        key = (record_hash(r), r.get("seed"), (r.get("provenance") or {}).get("created", ""))
        if key not in keep:
            continue
        policy = deployment_policy(r["method"])
        for h in r["history"]:
            rows.append(
                {
                    "task": r["task"],
                    "method": keep[key],
                    "config_hash": record_hash(r),
                    "seed": r["seed"],
                    "step": h["step"],
                    "bytes": h["bytes_fwd"] + h["bytes_bwd"],
                    "acc": h.get(POLICY_COLUMN[policy]),
                    "acc_raw": h.get("acc"),
                }
            )
    return pd.DataFrame(rows, columns=["task", "method", "config_hash", "seed", "step", "bytes", "acc", "acc_raw"])


def acc_at_budget(hist: pd.DataFrame, budget: float) -> float | None:
    """Accuracy of one run at a cumulative byte budget: its last evaluation within the budget.
    None where the run ended before the budget (never extrapolated) or had no evaluation yet."""
    if not len(hist) or hist["bytes"].max() < budget:
        return None
    within = hist[hist["bytes"] <= budget]
    return None if not len(within) else float(within.sort_values("step")["acc"].iloc[-1])


def bytes_to_reach(hist: pd.DataFrame, target: float) -> float | None:
    """Cumulative bytes at the first evaluation reaching `target` accuracy (None: never reached)."""
    hit = hist[hist["acc"] >= target].sort_values("step")
    return None if not len(hit) else float(hit["bytes"].iloc[0])


def budgets_for(hist: pd.DataFrame, count: int = 4) -> list[float]:
    """Log-spaced budgets between the smallest and largest run's final traffic on a task, rounded
    down to two significant digits (numbers people would pick, and never past what a run reached)."""
    finals = hist.groupby(["config_hash", "seed"])["bytes"].max()
    lo, hi = float(finals.min()), float(finals.max())
    if lo <= 0 or hi <= 0:
        return []
    raw = np.geomspace(lo, hi, count) if hi > lo else np.array([lo])
    return sorted({_floor2(float(b)) for b in raw})


def _floor2(x: float) -> float:
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return math.floor(x / scale) * scale


def equal_bytes(hist: pd.DataFrame, budgets: list[float]) -> pd.DataFrame:
    """Per configuration and budget: mean accuracy over the seeds that reached it, and how many did."""
    rows = []
    for (method, cfg), g in hist.groupby(["method", "config_hash"], sort=True):
        for budget in budgets:
            accs = [acc_at_budget(run, budget) for _, run in g.groupby("seed")]
            got = [a for a in accs if a is not None]
            rows.append(
                {
                    "method": method,
                    "config_hash": cfg,
                    "budget": budget,
                    "reached": len(got),
                    "seeds": len(accs),
                    "acc": float(np.mean(got)) if got else None,
                    "ci95": ci95(got) if got else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def bytes_to_targets(hist: pd.DataFrame, none_acc: float | None) -> pd.DataFrame:
    """Per configuration: mean bytes over seeds to reach each fraction of `none`'s final accuracy
    (a configuration counts as reaching it only if every seed did)."""
    rows = []
    for (method, cfg), g in hist.groupby(["method", "config_hash"], sort=True):
        row: dict[str, Any] = {"method": method, "config_hash": cfg}
        for frac in TARGET_FRACTIONS:
            if none_acc is None:
                row[frac] = None
                continue
            costs = [bytes_to_reach(run, frac * none_acc) for _, run in g.groupby("seed")]
            row[frac] = None if any(c is None for c in costs) else float(np.mean(costs))
        rows.append(row)
    return pd.DataFrame(rows)


def equal_steps(hist: pd.DataFrame) -> tuple[int | None, pd.DataFrame]:
    """The largest step every run on the task evaluated at, and each configuration's accuracy there."""
    per_run = hist.groupby(["config_hash", "seed"])["step"].apply(set)
    common = set.intersection(*per_run) if len(per_run) else set()
    common.discard(0)
    if not common:
        return None, pd.DataFrame(columns=["method", "config_hash", "acc", "ci95"])
    step = max(common)
    at = hist[hist["step"] == step]
    g = at.groupby(["method", "config_hash"], sort=True)["acc"]
    return step, pd.DataFrame({"acc": g.mean(), "ci95": g.apply(ci95)}).reset_index()


def headlines(eq: pd.DataFrame) -> list[str]:
    """Per budget: which configuration leads, by how much over the runner-up, and whether their 95 %
    intervals overlap. Computed, never written by hand. Leader and runner-up come from the
    configurations with the most seeds at that budget (a one-seed score is not a ranking); one
    with fewer seeds that scored higher is named after them, as such. Configurations tied at the
    top (to the three decimals shown, e.g. `adc-token` and `tokenprune`, one algorithm) lead
    together, and the margin is over the best one below them."""
    lines = []
    for budget, g in eq.groupby("budget", sort=True):
        g = g[g["acc"].notna() & (g["reached"] == g["seeds"])].sort_values(["acc", "method"], ascending=[False, True])
        ranked = g[g["reached"] == g["reached"].max()]
        if len(ranked) < 2:
            ranked = g
        if len(ranked) < 2:
            continue
        a = ranked.iloc[0]
        tied = ranked[[round(x, 3) == round(a["acc"], 3) for x in ranked["acc"]]]
        below = ranked.iloc[len(tied) :]
        names = " and ".join(f"`{m}`" for m in tied["method"])
        if not len(below):
            line = f"At {_mb(budget)} of training traffic, {names} tie with {a['acc']:.3f}"
        else:
            b = below.iloc[0]
            lead = f"{names} lead together" if len(tied) > 1 else f"{names} leads"
            line = (
                f"At {_mb(budget)} of training traffic, {lead} with {a['acc']:.3f}, "
                f"{a['acc'] - b['acc']:+.3f} over `{b['method']}` ({b['acc']:.3f}); {_overlap_verdict(_widest(tied), b)}"
            )
        above = g[(g["reached"] < a["reached"]) & (g["acc"] > a["acc"])]
        if len(above):
            c, n = above.iloc[0], int(above.iloc[0]["reached"])
            line += f" (`{c['method']}` scored {c['acc']:.3f} on {n} seed{'s' if n != 1 else ''} only)"
        lines.append(line + ".")
    return lines


def _widest(tied: pd.DataFrame) -> pd.Series:
    """Of configurations tied at the top, the one whose interval is widest (unknown counts as
    widest): the overlap verdict must hold for each of them."""
    return tied.iloc[int(tied["ci95"].fillna(float("inf")).to_numpy().argmax())]


def _overlap_verdict(a: pd.Series, b: pd.Series) -> str:
    """Whether `a`'s and `b`'s 95 % intervals overlap (`a` above `b`)."""
    if math.isnan(a["ci95"]) or math.isnan(b["ci95"]):
        return "too few seeds for an interval"
    if a["acc"] - a["ci95"] <= b["acc"] + b["ci95"]:
        return "the 95 % intervals overlap"
    return "the 95 % intervals do not overlap"


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.3g} MB"
