"""The training loop: build the parties, train over the wire, evaluate, write one record.

Read `run` top to bottom: `build_parties` (task, data, split model, method, roles),
`new_record` (identity and provenance), then per batch `train_step` (forward bytes -> server ->
gradient bytes -> client) until a `StopRule` says stop, `evaluate` every `eval_every` steps, and
`finish_record`, which writes the record however the run ended.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from adcbench.core.method import read_predictions
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import append_record
from adcbench.train.checkpoint import BatchStream, RunCheckpoint
from adcbench.train.config import (
    EVAL_POLICIES,
    POLICY_KEY,
    RunConfig,
    resolve,
)
from adcbench.train.evaluation import eval_due, eval_progress
from adcbench.train.identity import run_id
from adcbench.train.parties import Parties, build_parties, new_record, seed_everything
from adcbench.train.runtime import warn_if_oversubscribed
from adcbench.transport import Loopback, Meter, Transport

__all__ = [
    "EVAL_POLICIES",
    "Exchange",
    "Parties",
    "RunConfig",
    "StopRule",
    "build_parties",
    "evaluate",
    "resolve",
    "run",
    "seed_everything",
    "train_step",
]


def train_step(p: Parties, transport: Transport, x: torch.Tensor, y: torch.Tensor, step: int) -> float:
    """One step of split learning: every tensor crosses the transport as bytes, both ways."""
    transport.send("fwd", p.client.forward(x, y, step))
    grad_msg, loss = p.server.train_step(transport.recv("fwd"), step)
    transport.send("bwd", grad_msg)
    p.client.backward(transport.recv("bwd"))
    return loss


def evaluate(
    p: Parties, transport: Transport, pipe: Pipeline, which: str = "final", progress: bool = False
) -> tuple[float, float]:
    """Accuracy on the eval split (`which`: the history's loader or the full final one) with
    `pipe`'s messages, and eval bytes per sample it sent."""
    loader = p.eval_loaders[which]
    before = transport.meter.bytes["eval_fwd"]
    correct = total = 0
    with eval_progress(progress, len(loader), f"eval {pipe.spec}") as bar:
        for x, y in loader:
            transport.send("eval_fwd", p.client.forward_eval(x, pipe))
            transport.send("eval_bwd", p.server.predict(transport.recv("eval_fwd"), pipe))
            pred = read_predictions(transport.recv("eval_bwd"), len(y), p.client.cut.num_classes)
            correct += int((pred == y.to(pred.device)).sum())
            total += len(y)
            bar.update(1)
    return correct / total, (transport.meter.bytes["eval_fwd"] - before) / total


class Exchange:
    """How a step and an evaluation travel: both roles in this process (this default), or the
    client's half talking to a server process (train/remote.py)."""

    def train_step(self, p: Parties, transport: Transport, x: torch.Tensor, y: torch.Tensor, step: int) -> float:
        return train_step(p, transport, x, y, step)

    def evaluate(
        self, p: Parties, transport: Transport, pipe: Pipeline, which: str = "final", progress: bool = False
    ) -> tuple[float, float]:
        return evaluate(p, transport, pipe, which, progress)


class StopRule:
    """Says before each step whether the run must stop: epochs end the batch stream itself; this
    checks the byte budget (measured on the wire, or the paper's nominal accounting) and max_steps."""

    def __init__(self, settings: dict[str, Any], record: dict[str, Any]) -> None:
        self.budget = settings["budget_bytes"]
        if self.budget is None and "budget" in record:  # --budget-epochs, resolved by the record
            self.budget = record["budget"]["bytes"]
        self.max_steps = settings["max_steps"]
        self.nominal = settings["budget_accounting"] == "nominal"
        n = record["nominal"]
        self.nominal_step = 2 * (n["xi"] or 0) * n["base_bytes_per_step"]
        self.estimate = self.nominal_step if self.nominal else sum(record["analytic_bytes_per_step"].values())

    def reason(self, step: int, meter: Meter) -> str | None:
        if self.nominal:
            spent, step_bytes = step * self.nominal_step, self.nominal_step
        else:  # the next step is assumed to cost what the last one did; the first, its analytic size
            spent, step_bytes = meter.train_total, (meter.last["fwd"] + meter.last["bwd"]) if step else self.estimate
        if self.budget is not None and spent + step_bytes > self.budget:
            return "budget"
        if self.max_steps and step >= self.max_steps:
            return "max_steps"
        return None

    def total_steps(self, settings: dict[str, Any], steps_per_epoch: int) -> int:
        """For the progress bar only."""
        total = steps_per_epoch * (settings["epochs"] or 1)
        if self.max_steps:
            total = min(total, self.max_steps) if settings["epochs"] else self.max_steps
        if self.budget is not None and not settings["epochs"]:
            total = int(self.budget // max(1, self.estimate))
        return total


class _History:
    """Running means of loss and method stats between evaluations, and the history entries."""

    def __init__(
        self, p: Parties, record: dict[str, Any], transport: Transport, exchange: Exchange, progress: bool = False
    ) -> None:
        self.p, self.record, self.transport, self.exchange = p, record, transport, exchange
        self.loss_sum, self.loss_n = 0.0, 0
        self.stats_sum: dict[str, float] = {}
        self.eval_per_sample: dict[str, float] = {}
        self.policies = ["raw", "compressed"] if p.settings["eval_policy"] == "both" else [p.settings["eval_policy"]]
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()  # CPU seconds of this process (all its threads): load-independent
        self.progress = progress

    def add(self, loss: float, stats: dict[str, float]) -> None:
        self.loss_sum, self.loss_n = self.loss_sum + loss, self.loss_n + 1
        for k, v in stats.items():
            self.stats_sum[k] = self.stats_sum.get(k, 0.0) + v

    def evaluate(self, step: int, which: str = "history") -> None:
        p, m, nominal = self.p, self.transport.meter, self.record["nominal"]
        done: dict[str, float] = {}
        if which == "final" and self.record["history"] and self.record["history"][-1]["step"] == step:
            # The last history evaluation ran on the subset or under fewer policies: redo it.
            last = self.record["history"].pop()
            self.loss_sum, self.loss_n, self.stats_sum = last["train_loss"], 1, dict(last.get("stats", {}))
            if p.eval_loaders["history"] is p.eval_loaders["final"]:  # same samples: keep its passes
                done = {k: last[k] for k in ("acc", "acc_compressed") if k in last}
        entry: dict[str, Any] = {
            "step": step,
            "epoch": round(step / len(p.train_loader), 4),
            "samples": step * p.settings["batch_size"],
            "bytes_fwd": m.bytes["fwd"],
            "bytes_bwd": m.bytes["bwd"],
            "nominal_bytes_each_way": None
            if nominal["xi"] is None
            else step * nominal["xi"] * nominal["base_bytes_per_step"],
            "breakdown_fwd": dict(m.parts["fwd"]),
            "breakdown_bwd": dict(m.parts["bwd"]),
            "train_loss": self.loss_sum / max(self.loss_n, 1),
            "wall_s": round(time.perf_counter() - self.t0, 3),
            "eval_samples": len(p.eval_loaders[which].dataset),  # type: ignore[arg-type]
            **done,
        }
        policies = self.policies
        if which == "history" and p.settings.get("history_policy") == "deployed":
            policies = [q for q in policies if q == p.pipeline.deployment_policy] or policies
        for policy in policies:
            key = POLICY_KEY[policy]
            if key in entry:
                continue
            if policy == "compressed" and p.pipeline.spec == p.raw_pipeline.spec and "acc" in entry:
                # The method is the raw pipeline itself (`none`): one pass serves both policies.
                entry[key], self.eval_per_sample[policy] = entry["acc"], self.eval_per_sample["raw"]
                continue
            entry[key], self.eval_per_sample[policy] = self.exchange.evaluate(
                p, self.transport, p.raw_pipeline if policy == "raw" else p.pipeline, which, self.progress
            )
        # All traffic so far, evaluation included, and the time it took: what a link model replays.
        entry["traffic"] = {**m.snapshot(), "wall_s": round(time.perf_counter() - self.t0, 3)}
        if self.stats_sum:
            entry["stats"] = {k: round(v / max(self.loss_n, 1), 4) for k, v in self.stats_sum.items()}
        self.record["history"].append(entry)
        self.loss_sum, self.loss_n, self.stats_sum = 0.0, 0, {}

    def has_every_policy(self, entry: dict[str, Any]) -> bool:
        """Whether a history entry was evaluated under every policy the final evaluation asks for."""
        return all(POLICY_KEY[q] in entry for q in self.policies)

    def last_acc(self) -> str:
        key = POLICY_KEY[self.p.pipeline.deployment_policy]
        return next((f"{h[key]:.3f}" for h in reversed(self.record["history"]) if key in h), "-")


def run(cfg: RunConfig, transport: Transport | None = None, exchange: Exchange | None = None) -> dict[str, Any]:
    """Train one configuration; append its record to `cfg.out/<task>.jsonl`; return the record."""
    p = build_parties(cfg)
    record = new_record(cfg, p)
    warn_if_oversubscribed(p.runtime)
    transport, exchange = transport or Loopback(), exchange or Exchange()
    stop, history = StopRule(p.settings, record), _History(p, record, transport, exchange, cfg.progress)
    steps_per_epoch = len(p.train_loader)
    eval_every = p.settings["eval_every"] or steps_per_epoch
    # `epochs` passes, or without end when a budget or max_steps stops the run; resumable.
    batches = BatchStream(p.train_loader, p.settings["epochs"])
    ckpt = RunCheckpoint(
        cfg.checkpoint_dir, run_id(record["config_hash"], cfg.seed), cfg.checkpoint_every, cfg.keep_checkpoints
    )
    step = ckpt.resume(p, transport.meter, history, batches)
    if step:
        record["provenance"]["resumed_from_step"] = step
    bar = _progress(cfg.progress, stop.total_steps(p.settings, steps_per_epoch), f"{cfg.task} {p.pipeline.spec}")
    bar.update(step)
    stopped_by = "epochs"
    try:
        for x, y in batches:
            reason = stop.reason(step, transport.meter)
            if reason:
                stopped_by = reason
                break
            loss = exchange.train_step(p, transport, x, y, step)
            step += 1
            history.add(loss, p.client.stats)
            if evaluated := eval_due(step, eval_every, p.settings.get("eval_schedule", "fixed")):
                history.evaluate(step)
            ckpt.after_step(step, evaluated, p, transport.meter, history, batches)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}", acc=history.last_acc(), MB=f"{transport.meter.train_total / 1e6:.1f}", refresh=False
            )
        subset = p.eval_loaders["history"] is not p.eval_loaders["final"]
        last = record["history"][-1] if record["history"] else None
        if subset or last is None or last["step"] != step or not history.has_every_policy(last):
            history.evaluate(step, "final")
        record["status"] = "completed"
    except BaseException as exc:  # keep what was measured, mark how it ended, then re-raise
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        record["transport"] = transport.describe()
        finish_record(cfg, record, transport.meter, stopped_by, step, history)
    ckpt.finish()  # only once the completed record is on disk
    return record


def finish_record(
    cfg: RunConfig, record: dict[str, Any], m: Meter, stopped_by: str, step: int, history: _History
) -> None:
    """Summaries (final accuracy, bytes per direction and per sample, wall time); append the record."""
    samples = step * record["train"]["batch_size"]
    # What the payload really crossed as (from the last training messages), beside what was asked for.
    record["precision"].update(sent_fwd=history.p.client.sent, sent_bwd=history.p.server.sent)
    final = record["history"][-1] if record["history"] else {}
    record.update(
        {
            "final": {k: final.get(k) for k in ("step", "epoch", "acc", "acc_compressed", "train_loss")},
            "stopped_by": stopped_by if record["status"] == "completed" else record["status"],
            "steps": step,
            "bytes": {
                "fwd": m.bytes["fwd"],
                "bwd": m.bytes["bwd"],
                "messages_fwd": m.messages["fwd"],
                "messages_bwd": m.messages["bwd"],
                "breakdown_fwd": m.parts["fwd"],
                "breakdown_bwd": m.parts["bwd"],
                "per_sample_fwd": m.bytes["fwd"] / samples if samples else None,
                "per_sample_bwd": m.bytes["bwd"] / samples if samples else None,
                "eval_per_sample_raw": history.eval_per_sample.get("raw"),
                "eval_per_sample_compressed": history.eval_per_sample.get("compressed"),
            },
            "wall_s": round(time.perf_counter() - history.t0, 3),
            "cpu_s": round(time.process_time() - history.cpu0, 3),
        }
    )
    if cfg.out:
        out_path = Path(cfg.out) / f"{cfg.task}.jsonl"
        record["record_file"] = str(out_path)
        append_record(out_path, record)


def _progress(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True)
