"""The leaderboard's statistics in process, against golden values computed by hand:
the 95 % CI half-width is t_{0.975, n-1} · s / sqrt(n) (t = 12.706 for 2 seeds, 4.303 for 3),
and ξ_m is measured bytes against `none` on the same task (so `none` itself is 1)."""

from __future__ import annotations

import math

import pytest

from adcbench.report.leaderboard import runs_table, summarize


def record(method: str, seed: int, acc: float, fwd: int, bwd: int, chash: str) -> dict:
    steps, batch = 10, 4
    return {
        "status": "completed",
        "history": [{"step": steps}],
        "task": "digits",
        "method": method,
        "config_hash": chash,
        "seed": seed,
        "final": {"acc": acc, "acc_compressed": acc, "epoch": 1.0},
        "steps": steps,
        "bytes": {
            "fwd": fwd,
            "bwd": bwd,
            "per_sample_fwd": fwd / (steps * batch),
            "per_sample_bwd": bwd / (steps * batch),
        },
        "wall_s": 1.0,
        "provenance": {"created": f"2026-01-0{seed + 1}T00:00:00"},
    }


RECORDS = [
    record("none", 0, 0.50, 4000, 4000, "n"),
    record("none", 1, 0.60, 4000, 4000, "n"),
    record("none", 2, 0.70, 4000, 4000, "n"),
    record("adc", 0, 0.40, 1000, 3000, "a"),
    record("adc", 1, 0.60, 1000, 3000, "a"),
]


def test_ci_half_width_uses_the_t_quantile_of_n_minus_1_degrees() -> None:
    table = summarize(runs_table(RECORDS)).set_index("method")
    # s = 0.1 for (0.5, 0.6, 0.7): 4.302653 · 0.1 / sqrt(3); s = 0.141421 for (0.4, 0.6): 12.706205 · 0.1
    assert table.loc["none", "acc_ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert table.loc["adc", "acc_ci95"] == pytest.approx(12.706205 * 0.1, rel=1e-5)
    assert table.loc["none", "acc"] == pytest.approx(0.6) and table.loc["none", "seeds"] == 3


def test_xi_measured_is_bytes_against_none() -> None:
    table = summarize(runs_table(RECORDS)).set_index("method")
    assert table.loc["none", "xi_measured"] == pytest.approx(1.0)
    assert table.loc["adc", "xi_measured"] == pytest.approx(0.5 * (1000 / 4000 + 3000 / 4000))
