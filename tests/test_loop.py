"""The training loop's accounting, in process on the offline digits data (a few steps each):
what is evaluated, what is counted, when the budget stops a run, and what the config hash covers.
Each assertion can fail: counts and accuracies are recomputed here from the bytes on the wire."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _harness import one_thread  # noqa: F401 (module-wide fixture)

from adcbench.data.task import get_task, register_task
from adcbench.tasks.digits import Digits
from adcbench.train import RunConfig, run
from adcbench.train.identity import NOT_IDENTITY
from adcbench.train.loop import build_parties, new_record
from adcbench.transport import Loopback
from adcbench.wire import Message

BATCH = 16


@register_task("tiny8")
class Tiny8(Digits):
    """digits' data (1,437 train / 360 test) on a 3-block, 16-wide ViT: the loop's logic at a
    fraction of the cost of the task's own model."""

    description = "test-only: digits on a 3-block ViT of width 16"
    arch_kwargs = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=3, num_heads=2, mlp_ratio=2.0)
    split_index = 1


class Recording(Loopback):
    """A loopback that keeps every eval prediction and every training message size."""

    def __init__(self) -> None:
        super().__init__()
        self.preds: list[torch.Tensor] = []
        self.sizes: dict[str, list[int]] = {"fwd": [], "bwd": []}

    def send(self, direction: str, data: bytes) -> None:
        super().send(direction, data)
        if direction == "eval_bwd":
            self.preds.append(Message.decode(data)["pred"].long())
        elif direction in self.sizes:
            self.sizes[direction].append(len(data))


def cfg(**kw) -> RunConfig:
    base = dict(method="none", task="tiny8", batch_size=BATCH, max_steps=2, out=None, progress=False)
    return RunConfig(**{**base, **kw})


@pytest.mark.parametrize("val_fraction", [0.0, 0.25])
def test_evaluates_every_sample_of_the_asked_split_once(val_fraction: float) -> None:
    t = Recording()
    rec = run(cfg(eval_policy="raw", val_fraction=val_fraction), t)
    splits = get_task("tiny8")().splits(val_fraction=val_fraction)
    assert rec["eval_split"] == ("val" if val_fraction else "test") == splits.eval_name
    labels = torch.cat([y for _, y in torch.utils.data.DataLoader(splits.eval, batch_size=1024)])
    preds = torch.cat(t.preds)
    assert len(rec["history"]) == 1 and preds.shape == labels.shape, "one pass over the eval split"
    # the recorded accuracy is the accuracy of the predictions that crossed the wire
    assert rec["final"]["acc"] == int((preds == labels).sum()) / len(labels)
    assert rec["bytes"]["eval_per_sample_raw"] == t.meter.bytes["eval_fwd"] / len(labels)


def test_bytes_are_steps_times_analytic_plus_framing() -> None:
    t = Recording()
    rec = run(cfg(method="quant:bits=4", max_steps=3, eval_policy="raw"), t)
    a = rec["analytic_bytes_per_step"]
    for d in ("fwd", "bwd"):
        parts = rec["bytes"][f"breakdown_{d}"]
        assert parts["payload"] + parts["side"] + parts["labels"] == 3 * a[d]
        assert rec["bytes"][d] == sum(t.sizes[d]) == sum(parts.values())
        assert rec["bytes"][f"per_sample_{d}"] == rec["bytes"][d] / (3 * BATCH)
    assert rec["steps"] == 3 and rec["stopped_by"] == "max_steps"


def test_budget_is_never_exceeded_and_names_the_stop() -> None:
    one = run(cfg(max_steps=1, eval_policy="raw"))
    step = one["bytes"]["fwd"] + one["bytes"]["bwd"]
    analytic = sum(one["analytic_bytes_per_step"].values())  # what the first step is predicted to cost
    for budget, steps in ((3 * step, 3), (3 * step + step - 1, 3), (3 * step - 1, 2), (analytic - 1, 0)):
        rec = run(cfg(max_steps=None, epochs=None, budget_bytes=budget, eval_policy="raw"))
        spent = rec["bytes"]["fwd"] + rec["bytes"]["bwd"]
        assert spent <= budget, f"budget {budget}: spent {spent}"
        assert (rec["steps"], rec["stopped_by"]) == (steps, "budget"), f"budget {budget}"


def test_config_hash_covers_every_training_setting() -> None:
    def h(**kw) -> str:
        c = cfg(**kw)
        return new_record(c, build_parties(c))["config_hash"]

    base = h()
    assert h(seed=7) == base, "seeds of one configuration share a hash"
    changed = {
        "lr": dict(lr=3e-3),
        "epochs": dict(epochs=2),
        "batch_size": dict(batch_size=8),
        "max_steps": dict(max_steps=3),
        "split": dict(split=2),
        "eval_policy": dict(eval_policy="raw"),
        "budget": dict(budget_bytes=10**9),
        "method": dict(method="float:dtype=float16"),
    }
    for name, kw in changed.items():
        assert h(**kw) != base, f"the config hash ignores {name}"


def test_recorded_config_names_every_setting() -> None:
    c = cfg()
    rec = new_record(c, build_parties(c))
    train = rec["train"]
    for f in dataclasses.fields(RunConfig):
        if f.name in ("method", "task", "task_params", "data", "seed", "init", "arch"):
            continue  # recorded at the top level or under `model`
        if f.name in NOT_IDENTITY or f.name in ("device",):
            continue  # where and how it ran, not what: provenance and runtime
        if f.name in (
            "precision",
            "wire_dtype",
            "eval_samples",
            "final_eval",
            "eval_schedule",
            "budget_epochs",
            "history_policy",
            "final_eval_samples",
        ):
            continue  # in the identity only when set (so older records keep their hash): test_sweep.py
        assert f.name in train, f"{f.name} is not in the record's training settings"


def test_nominal_accounting_of_none_is_the_papers_base() -> None:
    c = cfg()
    p = build_parties(c)
    nominal = new_record(c, p)["nominal"]
    assert nominal["xi"] == 1.0  # `none` is the paper's C_Base: 4 bytes per value, per step and direction
    assert nominal["bytes_per_step"] == nominal["base_bytes_per_step"] == 4 * BATCH * p.cut.tokens * p.cut.dim


def test_nominal_budget_stops_at_the_papers_charge() -> None:
    c = cfg(max_steps=None, budget_accounting="nominal")
    p = build_parties(c)
    per_step = 2 * 4 * BATCH * p.cut.tokens * p.cut.dim  # none: xi = 1, both directions
    rec = run(dataclasses.replace(c, budget_bytes=3 * per_step + per_step - 1, eval_policy="raw"))
    assert (rec["steps"], rec["stopped_by"]) == (3, "budget")


def test_both_policies_and_running_loss_between_evaluations(monkeypatch) -> None:
    import adcbench.train.loop as loop

    losses: list[float] = []
    step = loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a: losses.append(step(*a)) or losses[-1])
    rec = run(cfg(method="quant:bits=2", max_steps=4, eval_every=2, eval_policy="both"))
    assert [h["train_loss"] for h in rec["history"]] == pytest.approx([sum(losses[:2]) / 2, sum(losses[2:]) / 2])
    b = rec["bytes"]
    assert b["eval_per_sample_compressed"] < b["eval_per_sample_raw"], "compressed eval sends the method's bytes"


def test_deployed_history_evaluates_only_the_deployment_policy_and_the_final_both() -> None:
    t = Recording()
    rec = run(cfg(method="quant:bits=2", max_steps=4, eval_every=2, history_policy="deployed"), t)
    # quant is deployed raw: the step-2 history has no compressed pass, the final one has both.
    assert [sorted(k for k in h if k.startswith("acc")) for h in rec["history"]] == [
        ["acc"],
        ["acc", "acc_compressed"],
    ]
    assert len(t.preds) == 3 * 2  # three passes over the 359 test digits at batch 256
    assert rec["train"]["history_policy"] == "deployed"
    assert rec["config_hash"] != run(cfg(method="quant:bits=2", max_steps=4, eval_every=2))["config_hash"]
    # A learned codec is deployed compressed: its history keeps that policy, not the raw one.
    rec = run(cfg(method="bottleneck:ratio=0.5", max_steps=2, eval_every=1, history_policy="deployed"))
    assert sorted(k for k in rec["history"][0] if k.startswith("acc")) == ["acc_compressed"]


def test_cpu_seconds_count_computation_not_waiting(monkeypatch) -> None:
    """`cpu_s` is the process's CPU time: a run whose steps wait (as on a busy machine) shows
    the wait in `wall_s` only."""
    import time

    import adcbench.train.loop as loop

    step = loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a: (time.sleep(0.3), step(*a))[1])
    rec = run(cfg(max_steps=4, eval_every=4, eval_policy="raw"))
    assert 0 < rec["cpu_s"] < rec["wall_s"] - 1.0  # four 0.3 s waits are wall time, not CPU time


def test_final_eval_samples_is_a_fixed_superset_of_the_history_subset() -> None:
    t = Recording()
    rec = run(cfg(max_steps=2, eval_every=1, eval_policy="raw", eval_samples=40, final_eval_samples=100), t)
    assert [(h["step"], h["eval_samples"]) for h in rec["history"]] == [(1, 40), (2, 100)]
    assert rec["train"]["final_eval_samples"] == 100
    from adcbench.train.evaluation import eval_loaders

    data = get_task("tiny8")().splits().eval
    loaders = eval_loaders(data, {"batch_size": BATCH, "eval_samples": 40, "final_eval_samples": 100})
    history, final = (set(loaders[k].dataset.indices) for k in ("history", "final"))  # type: ignore[attr-defined]
    assert len(history) == 40 and len(final) == 100 and history < final
    with pytest.raises(Exception, match="final_eval_samples=30 is out of range; valid: integer >= 40"):
        run(cfg(eval_samples=40, final_eval_samples=30))


def test_log_schedule_evaluates_at_log_spaced_steps_and_keeps_fixed_hashes() -> None:
    fixed = run(cfg(max_steps=10, eval_every=5, eval_policy="raw"))
    log = run(cfg(max_steps=10, eval_every=5, eval_policy="raw", eval_schedule="log"))
    assert [h["step"] for h in fixed["history"]] == [5, 10]
    assert [h["step"] for h in log["history"]] == [1, 2, 3, 4, 5, 6, 8, 10]  # x1.5 steps, every 5, the end
    assert "eval_schedule" not in fixed["train"] and log["train"]["eval_schedule"] == "log"
    assert fixed["config_hash"] != log["config_hash"]
    # The schedule changes when the history is read, not the training: the same bytes and loss.
    assert log["bytes"]["fwd"] == fixed["bytes"]["fwd"] and log["steps"] == fixed["steps"] == 10


@pytest.mark.parametrize("accounting", ["measured", "nominal"])
def test_budget_in_base_epochs_gives_none_exactly_that_many_epochs(accounting: str) -> None:
    """--budget-epochs E: E epochs of Base traffic, in bytes once the train split is known; Base
    itself then trains floor(E * steps per epoch) steps, under either accounting."""
    t = Recording()
    c = cfg(max_steps=None, budget_epochs=0.25, budget_accounting=accounting, eval_policy="raw")
    rec = run(c, t)
    steps_per_epoch = len(get_task("tiny8")().splits().train) // BATCH
    b = rec["budget"]
    assert (b["base_epochs"], b["steps_per_epoch"]) == (0.25, steps_per_epoch)
    if accounting == "measured":
        assert b["base_step_bytes"] == t.sizes["fwd"][0] + t.sizes["bwd"][0]  # Base's own messages
    else:
        assert b["base_step_bytes"] == 2 * 4 * BATCH * rec["cut"]["tokens"] * rec["cut"]["dim"]
    assert b["bytes"] == int(0.25 * steps_per_epoch * b["base_step_bytes"])
    assert (rec["steps"], rec["stopped_by"]) == (int(0.25 * steps_per_epoch), "budget")
    # a budget in epochs is another configuration than the same bytes given as bytes
    c2 = cfg(max_steps=None, budget_bytes=b["bytes"], budget_accounting=accounting, eval_policy="raw")
    assert new_record(c2, build_parties(c2))["config_hash"] != rec["config_hash"]


def test_one_byte_budget_only() -> None:
    from adcbench.errors import ParamError

    with pytest.raises(ParamError, match="not both"):
        build_parties(cfg(budget_epochs=1.0, budget_bytes=10**6))
    with pytest.raises(ParamError, match="budget_epochs=-1"):
        build_parties(cfg(budget_epochs=-1.0))
