"""Leaderboard v2 on synthetic records: deployment policy, Pareto rows, equal bytes without
extrapolation, equal steps, computed headlines, determinism, CSV, several result folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from adcbench.report.leaderboard import write_leaderboard
from adcbench.report.tables import acc_at_budget, bytes_to_reach, deployment_policy, equal_steps, headlines


def record(method: str, seed: int, accs: list[float], step_bytes: int, created: str = "2026-01-01") -> dict:
    """A completed run evaluated every 10 steps; `step_bytes` per step, split evenly fwd/bwd."""
    hist = [
        {
            "step": 10 * (i + 1),
            "epoch": i + 1,
            "bytes_fwd": 5 * step_bytes * (i + 1),
            "bytes_bwd": 5 * step_bytes * (i + 1),
            "acc": a,
            "acc_compressed": a - 0.1,
        }
        for i, a in enumerate(accs)
    ]
    steps = 10 * len(accs)
    half = steps * step_bytes // 2
    part = {"payload": half - 10, "side": 4, "labels": 6, "framing": 0}
    return {
        "task": "toy",
        "method": method,
        "config_hash": f"h-{method}",
        "seed": seed,
        "status": "completed",
        "history": hist,
        "steps": steps,
        "train": {"batch_size": 10},
        "model": {"init": "scratch"},
        "final": {"acc": accs[-1], "acc_compressed": accs[-1] - 0.1, "epoch": len(accs), "step": steps},
        "bytes": {
            "fwd": half,
            "bwd": half,
            "per_sample_fwd": half / (steps * 10),
            "per_sample_bwd": half / (steps * 10),
            "breakdown_fwd": part,
            "breakdown_bwd": part,
        },
        "wall_s": 1.0,
        "provenance": {"created": created},
    }


def write(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


RECORDS = [
    *(record("none", s, [0.5, 0.8, 0.9], 1000) for s in range(3)),
    *(record("adc", s, [0.6 + 0.01 * s, 0.85, 0.88 + 0.01 * s], 100) for s in range(3)),
    *(record("bottleneck", s, [0.3, 0.4, 0.5], 100) for s in range(3)),
]


def test_deployment_policy_per_method_and_composition() -> None:
    assert deployment_policy("adc") == "raw" and deployment_policy("topk") == "raw"
    assert deployment_policy("bottleneck") == "compressed" and deployment_policy("c3sl") == "compressed"
    assert deployment_policy("bottleneck+quant:bits=8") == "compressed"


def test_deployment_policy_of_a_method_this_machine_cannot_build(monkeypatch) -> None:
    """A leaderboard made where an optional extra is missing (CompressAI) still reads the method's
    registered policy: entropy-bottleneck rows were shown under the raw policy."""
    from adcbench.core.pipeline import Pipeline

    def unbuildable(spec, wire_dtype=None):
        raise RuntimeError("needs an extra")

    monkeypatch.setattr(Pipeline, "from_spec", unbuildable)
    deployment_policy.cache_clear()
    try:
        assert deployment_policy("bottleneck:ratio=0.1") == "compressed"
        assert deployment_policy("quant:bits=4") == "raw" and deployment_policy("gone:x=1") == "raw"
    finally:
        deployment_policy.cache_clear()


def test_budget_reads_history_and_never_extrapolates() -> None:
    h = pd.DataFrame({"step": [10, 20, 30], "bytes": [100, 200, 300], "acc": [0.1, 0.5, 0.7]})
    assert acc_at_budget(h, 250) == 0.5  # the last evaluation within the budget
    assert acc_at_budget(h, 300) == 0.7
    assert acc_at_budget(h, 301) is None  # the run ended before this budget
    assert acc_at_budget(h, 50) is None  # no evaluation yet
    assert bytes_to_reach(h, 0.5) == 200 and bytes_to_reach(h, 0.8) is None


def test_equal_steps_uses_the_largest_common_step() -> None:
    h = pd.DataFrame(
        {
            "method": ["a", "a", "b"],
            "config_hash": ["1", "1", "2"],
            "seed": [0, 0, 0],
            "step": [10, 20, 10],
            "bytes": [1, 2, 1],
            "acc": [0.2, 0.9, 0.4],
        }
    )
    step, at = equal_steps(h)
    assert step == 10 and dict(zip(at["method"], at["acc"])) == {"a": 0.2, "b": 0.4}


def test_headline_names_the_leader_margin_and_overlap() -> None:
    eq = pd.DataFrame(
        {
            "method": ["x", "y"],
            "config_hash": ["1", "2"],
            "budget": [1e6, 1e6],
            "reached": [3, 3],
            "seeds": [3, 3],
            "acc": [0.9, 0.5],
            "ci95": [0.01, 0.01],
        }
    )
    [line] = headlines(eq)
    assert "`x` leads with 0.900, +0.400 over `y`" in line and "do not overlap" in line
    eq.loc[1, "acc"] = 0.895
    assert "intervals overlap" in headlines(eq)[0]


def test_headline_names_configurations_tied_at_the_top_together() -> None:
    """One algorithm under two names (adc-token, tokenprune) scores the same: neither "leads" the
    other by +0.000; both lead, by their margin over the best configuration below them."""
    eq = pd.DataFrame(
        {
            "method": ["tokenprune", "adc-token", "z"],
            "config_hash": ["1", "2", "3"],
            "budget": [1e6] * 3,
            "reached": [3] * 3,
            "seeds": [3] * 3,
            "acc": [0.6, 0.6, 0.5],
            "ci95": [0.01, 0.02, 0.01],
        }
    )
    [line] = headlines(eq)
    assert "`adc-token` and `tokenprune` lead together with 0.600, +0.100 over `z` (0.500)" in line
    assert line.endswith("; the 95 % intervals do not overlap.")
    eq.loc[0, "ci95"] = 0.2  # the wider interval of the two tied decides the overlap (named second)
    assert headlines(eq)[0].endswith("; the 95 % intervals overlap.")
    [line] = headlines(eq.iloc[:2])
    assert line == "At 1 MB of training traffic, `adc-token` and `tokenprune` tie with 0.600."


def test_headline_ranks_the_configurations_with_the_most_seeds() -> None:
    """A one-seed score above the three-seed leader is named as such, not made the leader."""
    eq = pd.DataFrame(
        {
            "method": ["x", "y", "lucky"],
            "config_hash": ["1", "2", "3"],
            "budget": [1e6] * 3,
            "reached": [3, 3, 1],
            "seeds": [3, 3, 1],
            "acc": [0.6, 0.5, 0.7],
            "ci95": [0.01, 0.01, float("nan")],
        }
    )
    [line] = headlines(eq)
    assert "`x` leads with 0.600, +0.100 over `y`" in line and "do not overlap" in line
    assert line.endswith("(`lucky` scored 0.700 on 1 seed only).")
    eq.loc[2, "acc"] = 0.55  # below the leader: not named
    assert "lucky" not in headlines(eq)[0]
    eq = eq.assign(reached=1, seeds=1)  # all single seeds: ranked among themselves, as before
    assert "`lucky` leads" in headlines(eq.assign(acc=[0.6, 0.5, 0.7]))[0]


def test_leaderboard_tables_policy_pareto_and_determinism(tmp_path: Path) -> None:
    res = write(tmp_path / "results", RECORDS)
    md, plots = tmp_path / "lb.md", tmp_path / "plots"
    summary = write_leaderboard(res, md, plots, csv=tmp_path / "lb.csv")
    text = md.read_text()
    row = summary.set_index("method")
    # bottleneck is deployed compressed: its deployed accuracy is acc_compressed (0.5 - 0.1).
    assert row.loc["bottleneck", "policy"] == "compressed"
    assert row.loc["bottleneck", "acc_deployed"] == pytest.approx(0.4)
    assert row.loc["adc", "acc_deployed"] == pytest.approx(0.89)
    # adc has 10x fewer bytes than none and nearly its accuracy: both Pareto-optimal; bottleneck is
    # dominated by adc (same bytes, lower accuracy).
    assert row.loc["adc", "pareto"] and row.loc["none", "pareto"] and not row.loc["bottleneck", "pareto"]
    assert "| `adc` ★ | raw | 3 |" in text and "| `bottleneck` | compressed | 3 |" in text
    assert "ended" in text  # adc's runs end far below none's traffic
    assert "leads with" in text  # a computed headline
    first = hashlib.sha256(md.read_bytes() + b"".join(p.read_bytes() for p in sorted(plots.glob("*.png"))))
    write_leaderboard(res, md, plots)
    again = hashlib.sha256(md.read_bytes() + b"".join(p.read_bytes() for p in sorted(plots.glob("*.png"))))
    assert first.hexdigest() == again.hexdigest()
    assert len(list(plots.glob("toy-*.png"))) == 3
    assert set(pd.read_csv(tmp_path / "lb.csv")["method"]) == {"none", "adc", "bottleneck"}


def test_cli_takes_several_result_folders_and_rejects_a_missing_one(tmp_path: Path) -> None:
    from adcbench.cli import main

    a = write(tmp_path / "a", RECORDS[:3])
    b = write(tmp_path / "b", RECORDS[3:6])
    out = tmp_path / "lb.md"
    res = CliRunner().invoke(main, ["leaderboard", str(a), str(b), "--out", str(out), "--plots", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "`none`" in out.read_text() and "`adc`" in out.read_text()
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "nope"), "--out", str(out)])
    assert res.exit_code == 2 and "no such results folder" in res.stderr
