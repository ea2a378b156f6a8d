"""The loop's step / evaluate / budget logic on fakes (no model, no data): the budget's boundaries
in both accountings, the progress total, the order of a step's messages, the accuracy and bytes of
an evaluation, the running means a history entry reports, which passes a final or a thinned
(`history_policy=deployed`) evaluation runs, and the wall time's resolution. Fast enough to judge every loop
mutant (mutation/loop.toml)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from adcbench.core.method import prediction_message
from adcbench.train import loop
from adcbench.train.loop import StopRule, _History, evaluate, train_step
from adcbench.transport import Loopback, Meter

FWD, BWD = 30, 12  # analytic bytes per training message


def _rule(budget=None, max_steps=None, nominal=False, xi=0.25, base=100) -> StopRule:
    settings = {
        "budget_bytes": budget,
        "max_steps": max_steps,
        "budget_accounting": "nominal" if nominal else "measured",
    }
    record = {"nominal": {"xi": xi, "base_bytes_per_step": base}, "analytic_bytes_per_step": {"fwd": FWD, "bwd": BWD}}
    return StopRule(settings, record)


def _meter(*steps: tuple[int, int]) -> Meter:
    m = Meter(describe=lambda data: {})
    for f, b in steps:
        m.count("fwd", b"x" * f)
        m.count("bwd", b"x" * b)
    return m


def test_first_step_is_judged_on_its_analytic_size() -> None:
    assert _rule(budget=FWD + BWD).reason(0, _meter()) is None  # exactly the budget: allowed
    assert _rule(budget=FWD + BWD - 1).reason(0, _meter()) == "budget"
    assert _rule().reason(0, _meter()) is None  # no budget, no max_steps: never stops


def test_later_steps_assume_the_last_steps_measured_size() -> None:
    m = _meter((50, 10), (40, 20))  # spent 120, the last step cost 60
    assert _rule(budget=180).reason(2, m) is None
    assert _rule(budget=179).reason(2, m) == "budget"
    assert _rule(budget=1000, max_steps=2).reason(2, m) == "max_steps"
    assert _rule(budget=1000, max_steps=3).reason(2, m) is None


def test_max_steps_boundary() -> None:
    rule = _rule(max_steps=3)
    assert [rule.reason(s, _meter()) for s in range(5)] == [None, None, None, "max_steps", "max_steps"]
    assert _rule(max_steps=0).reason(7, _meter()) is None  # 0: no step limit


def test_nominal_accounting_charges_two_xi_base_per_step() -> None:
    rule = _rule(budget=500, nominal=True, xi=0.25, base=100)  # 50 bytes a step, whatever the wire says
    assert rule.nominal_step == 50 and rule.estimate == 50
    m = _meter((10_000, 10_000))
    assert rule.reason(9, m) is None  # 9 steps spent + the 10th = 500
    assert rule.reason(10, m) == "budget"
    assert _rule(budget=10, nominal=True, xi=None).reason(10**6, m) is None  # no xi: charged nothing
    assert _rule(budget=10, nominal=False).estimate == FWD + BWD


def test_total_steps_for_the_progress_bar() -> None:
    def total(budget=None, max_steps=None, epochs=None, per_epoch=10):
        return _rule(budget=budget, max_steps=max_steps).total_steps({"epochs": epochs}, per_epoch)

    assert total(epochs=3) == 30
    assert total(epochs=3, max_steps=7) == 7
    assert total(epochs=1, max_steps=70) == 10
    assert total(max_steps=70) == 70
    assert total() == 10
    assert total(budget=10 * (FWD + BWD) + 5) == 10
    assert total(budget=10 * (FWD + BWD) + 5, epochs=2) == 20


class _Client:
    def __init__(self, log: list) -> None:
        self.log, self.cut = log, SimpleNamespace(num_classes=4)

    def forward(self, x, y, step):
        self.log.append(("client.forward", step))
        return b"F" * (3 + step)

    def backward(self, data):
        self.log.append(("client.backward", data))

    def forward_eval(self, x, pipe):
        return b"E" * (5 * len(x))


class _Server:
    def __init__(self, log: list) -> None:
        self.log = log

    def train_step(self, data, step):
        self.log.append(("server.train_step", data, step))
        return b"G" * 7, 0.5 + step

    def predict(self, data, pipe):
        return prediction_message(pipe.answer[: len(data) // 5], 4)


def test_train_step_sends_both_ways_in_order_and_returns_the_loss() -> None:
    log: list = []
    p = SimpleNamespace(client=_Client(log), server=_Server(log))
    t = Loopback(Meter(describe=lambda data: {}))
    assert train_step(p, t, torch.zeros(2), torch.zeros(2), 4) == 4.5
    assert log == [("client.forward", 4), ("server.train_step", b"F" * 7, 4), ("client.backward", b"G" * 7)]
    assert t.meter.bytes["fwd"] == 7 and t.meter.bytes["bwd"] == 7 and t.meter.messages["fwd"] == 1


def test_evaluate_scores_every_sample_and_counts_eval_bytes_per_sample() -> None:
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loader = [(torch.zeros(4), y[:4]), (torch.zeros(2), y[4:])]
    log: list = []
    p = SimpleNamespace(client=_Client(log), server=_Server(log), eval_loaders={"final": loader})
    pipe = SimpleNamespace(spec="x", answer=torch.tensor([0, 1, 0, 0]))  # 2 of 4, then 2 of 2 right
    t = Loopback(Meter(describe=lambda data: {}))
    t.meter.bytes["eval_fwd"] = 1000  # earlier evaluations do not count
    acc, per_sample = evaluate(p, t, pipe)
    assert acc == pytest.approx(4 / 6) and per_sample == 5.0


class _Exchange:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def evaluate(self, p, transport, pipe, which, progress):
        self.calls.append(f"{pipe.spec}/{which}")
        return {"raw": 0.5, "quant:bits=4": 0.25}[pipe.spec], {"raw": 100.0, "quant:bits=4": 10.0}[pipe.spec]


def _history(policy: str, spec: str = "quant:bits=4", xi=0.5) -> tuple[_History, _Exchange]:
    p = SimpleNamespace(
        train_loader=[None] * 8,
        settings={"eval_policy": policy, "batch_size": 4},
        eval_loaders={"history": SimpleNamespace(dataset=[0] * 3), "final": SimpleNamespace(dataset=[0] * 9)},
        pipeline=SimpleNamespace(spec=spec),
        raw_pipeline=SimpleNamespace(spec="raw"),
    )
    record = {"nominal": {"xi": xi, "base_bytes_per_step": 40}, "history": []}
    ex = _Exchange()
    return _History(p, record, Loopback(_meter((6, 2))), ex), ex


def test_history_entry_reports_running_means_and_both_policies() -> None:
    h, ex = _history("both")
    h.add(1.0, {"k": 2.0})
    h.add(3.0, {"k": 4.0})
    h.evaluate(2)
    e = h.record["history"][-1]
    assert ex.calls == ["raw/history", "quant:bits=4/history"]
    assert (e["acc"], e["acc_compressed"]) == (0.5, 0.25)
    assert h.eval_per_sample == {"raw": 100.0, "compressed": 10.0}
    assert e["train_loss"] == 2.0 and e["stats"] == {"k": 3.0}
    assert (e["step"], e["epoch"], e["samples"], e["eval_samples"]) == (2, 0.25, 8, 3)
    assert (e["bytes_fwd"], e["bytes_bwd"], e["nominal_bytes_each_way"]) == (6, 2, 40.0)
    h.add(5.0, {})  # the means restart after an evaluation
    h.evaluate(3)
    assert h.record["history"][-1]["train_loss"] == 5.0 and "stats" not in h.record["history"][-1]


def test_history_single_policy_and_none_reuses_the_raw_pass() -> None:
    h, ex = _history("compressed", xi=None)
    h.evaluate(1)
    assert ex.calls == ["quant:bits=4/history"] and "acc" not in h.record["history"][-1]
    assert h.record["history"][-1]["nominal_bytes_each_way"] is None
    assert h.record["history"][-1]["train_loss"] == 0.0  # no step since: 0, not a division by zero
    h, ex = _history("both", spec="raw")
    h.evaluate(1)
    assert ex.calls == ["raw/history"] and h.record["history"][-1]["acc_compressed"] == 0.5


def test_final_evaluation_replaces_a_subset_one_at_the_same_step() -> None:
    h, ex = _history("raw")
    h.add(2.0, {"k": 1.0})
    h.evaluate(4)
    h.evaluate(4, "final")
    assert [e["step"] for e in h.record["history"]] == [4]
    e = h.record["history"][0]
    assert e["eval_samples"] == 9 and e["train_loss"] == 2.0 and e["stats"] == {"k": 1.0}
    assert ex.calls == ["raw/history", "raw/final"], "the final set is another one: evaluated again"
    h.evaluate(5, "final")  # another step: appended
    assert [e["step"] for e in h.record["history"]] == [4, 5]


def test_final_evaluation_on_the_history_set_keeps_its_passes() -> None:
    h, ex = _history("raw")
    h.p.eval_loaders["final"] = h.p.eval_loaders["history"]
    h.evaluate(4)
    h.evaluate(4, "final")
    assert ex.calls == ["raw/history"] and h.record["history"][0]["acc"] == 0.5


def test_deployed_history_policy_thins_history_entries_only() -> None:
    h, ex = _history("both")
    h.p.settings["history_policy"] = "deployed"
    h.p.pipeline.deployment_policy = "raw"
    h.evaluate(2)
    h.evaluate(3, "final")
    assert ex.calls == ["raw/history", "raw/final", "quant:bits=4/final"]
    assert "acc_compressed" not in h.record["history"][0] and "acc_compressed" in h.record["history"][1]


def test_wall_time_is_recorded_to_the_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 101.23456, 101.23456])
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    h, _ = _history("raw")
    h.evaluate(1)
    e = h.record["history"][0]
    assert e["wall_s"] == 1.235 and e["traffic"]["wall_s"] == 1.235
