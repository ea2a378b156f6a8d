"""The training loop: build the parties, train over the wire, evaluate, write one record.

Read `run` top to bottom: `build_parties` (task, data, split model, method, roles),
`new_record` (identity and provenance), then per batch `train_step` (forward bytes -> server ->
gradient bytes -> client) until a `StopRule` says stop, `evaluate` every `eval_every` steps, and
`finish_record`, which writes the record however the run ended.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from adcbench.core.method import Cut
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import SCHEMA, append_record, config_hash, provenance
from adcbench.data.task import Task, get_task
from adcbench.errors import AdcbenchError, ParamError
from adcbench.model.backbones import build_backbone
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.config import EVAL_POLICIES, RunConfig, resolve
from adcbench.train.roles import Client, Server
from adcbench.train.runtime import compile_blocks, set_threads, warn_if_oversubscribed
from adcbench.transport import Loopback, Meter, Transport
from adcbench.wire import Message

__all__ = [
    "EVAL_POLICIES",
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclasses.dataclass
class Parties:
    """Everything a run trains with: the task's data, the split model's two roles, the method."""

    task: Task
    settings: dict[str, Any]
    pipeline: Pipeline
    raw_pipeline: Pipeline  # `none`: what the raw evaluation policy sends
    cut: Cut
    client: Client
    server: Server
    train_loader: DataLoader
    eval_loader: DataLoader
    eval_name: str
    model_info: dict[str, Any]
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)  # threads, compile, row_skip


def _device(cfg: RunConfig) -> torch.device:
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdcbenchError("--device cuda, but no CUDA device is available here; use --device cpu")
    return device


def build_parties(cfg: RunConfig) -> Parties:
    """Task, loaders, split model and roles; all settings are validated before any data loads."""
    task = get_task(cfg.task)(data=cfg.data, **cfg.task_params)
    pipeline = Pipeline.from_spec(cfg.method)
    settings = resolve(cfg, task)
    device = _device(cfg)
    runtime = {**set_threads(cfg.threads), "compile": cfg.compile, "row_skip": cfg.row_skip}
    init = cfg.init or task.default_init
    seed_everything(cfg.seed)

    splits = task.splits(val_fraction=settings["val_fraction"])
    bs = settings["batch_size"]
    train_loader = DataLoader(
        splits.train,
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=task.num_workers,
    )
    eval_loader = DataLoader(splits.eval, batch_size=max(bs, 256), shuffle=False, num_workers=task.num_workers)
    if len(train_loader) == 0:
        raise ParamError(f"batch_size={bs} exceeds the {len(splits.train)} training samples")

    vit, init_info = build_backbone(task, init, cfg.arch)
    model_info = {
        "arch": cfg.arch or task.arch,
        "init": init,
        "depth": len(vit.blocks),
        "params": sum(p.numel() for p in vit.parameters()),
        **init_info,
    }
    client_net, server_net = split_vit(vit, settings["split"], capture_attention=pipeline.needs_attention)
    client_net.to(device), server_net.to(device)
    if cfg.compile:
        compile_blocks(client_net, server_net)
    runtime["row_skip"] = cfg.row_skip and pipeline.selects_rows and client_net.can_skip_rows
    n, d = cut_shape(client_net, task.image_size, task.in_chans)
    cut = Cut(n, d, task.num_classes, bs, client_net.num_prefix_tokens)
    pipeline.setup(cut)
    for side in ("client", "server"):
        for m in pipeline.modules(side):
            m.to(device)
    raw_pipeline = Pipeline.from_spec("none")
    raw_pipeline.setup(cut)
    return Parties(
        task,
        settings,
        pipeline,
        raw_pipeline,
        cut,
        Client(client_net, pipeline, cut, settings["lr"], cfg.seed, device, row_skip=cfg.row_skip),
        Server(server_net, pipeline, cut, settings["lr"], cfg.seed, device),
        train_loader,
        eval_loader,
        splits.eval_name,
        model_info,
        runtime,
    )


def new_record(cfg: RunConfig, p: Parties) -> dict[str, Any]:
    """The record's identity (what `config_hash` covers), provenance and accounting constants."""
    identity = {
        "method": p.pipeline.spec,
        "stages": p.pipeline.resolved(),
        "task": cfg.task,
        "task_params": p.task.config,
        "data": cfg.data,
        "model": p.model_info,
        "train": p.settings,
    }
    record: dict[str, Any] = {
        "schema": SCHEMA,
        **identity,
        "seed": cfg.seed,
        "config_hash": config_hash(identity),
        "cut": dataclasses.asdict(p.cut),
        "eval_split": p.eval_name,
        "data_info": p.task.data_info(),
        "analytic_bytes_per_step": dict(zip(("fwd", "bwd"), p.pipeline.analytic_bytes(p.settings["batch_size"]))),
        "provenance": provenance(cfg.device),
        "runtime": p.runtime,  # how the machine was used; not identity (same numbers either way)
        "status": "running",
        "history": [],
    }
    nominal = p.pipeline.nominal_ratio()
    base_step = 4 * p.settings["batch_size"] * p.cut.tokens * p.cut.dim  # the paper's C_Base per step and direction
    record["nominal"] = {
        "xi": nominal,
        "base_bytes_per_step": base_step,
        "bytes_per_step": None if nominal is None else nominal * base_step,
    }
    if p.settings["budget_accounting"] == "nominal" and nominal is None:
        raise ParamError(f"{p.pipeline.spec} has no nominal ratio in the paper; use --budget-accounting measured")
    return record


def train_step(p: Parties, transport: Transport, x: torch.Tensor, y: torch.Tensor, step: int) -> float:
    """One step of split learning: every tensor crosses the transport as bytes, both ways."""
    transport.send("fwd", p.client.forward(x, y, step))
    grad_msg, loss = p.server.train_step(transport.recv("fwd"), step)
    transport.send("bwd", grad_msg)
    p.client.backward(transport.recv("bwd"))
    return loss


def evaluate(p: Parties, transport: Transport, pipe: Pipeline) -> tuple[float, float]:
    """Accuracy on the eval split with `pipe`'s messages, and eval bytes per sample it sent."""
    before = transport.meter.bytes["eval_fwd"]
    correct = total = 0
    for x, y in p.eval_loader:
        transport.send("eval_fwd", p.client.forward_eval(x, pipe))
        transport.send("eval_bwd", p.server.predict(transport.recv("eval_fwd"), pipe))
        pred = Message.decode(transport.recv("eval_bwd"))["pred"]
        correct += int((pred.long() == y).sum())  # type: ignore[union-attr]
        total += len(y)
    return correct / total, (transport.meter.bytes["eval_fwd"] - before) / total


class StopRule:
    """Says before each step whether the run must stop: epochs end the batch stream itself; this
    checks the byte budget (measured on the wire, or the paper's nominal accounting) and max_steps."""

    def __init__(self, settings: dict[str, Any], record: dict[str, Any]) -> None:
        self.budget = settings["budget_bytes"]
        self.max_steps = settings["max_steps"]
        self.nominal = settings["budget_accounting"] == "nominal"
        n = record["nominal"]
        self.nominal_step = 2 * (n["xi"] or 0) * n["base_bytes_per_step"]
        self.estimate = self.nominal_step if self.nominal else sum(record["analytic_bytes_per_step"].values())

    def reason(self, step: int, meter: Meter) -> str | None:
        if self.nominal:
            spent, step_bytes = step * self.nominal_step, self.nominal_step
        else:  # the next step is assumed to cost what the last one did
            spent, step_bytes = meter.train_total, meter.last["fwd"] + meter.last["bwd"]
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


def _batches(loader: DataLoader, epochs: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batch stream: `epochs` passes, or without end when a budget or max_steps stops the run."""
    for _ in range(epochs) if epochs else itertools.count():
        yield from loader


class _History:
    """Running means of loss and method stats between evaluations, and the history entries."""

    def __init__(self, p: Parties, record: dict[str, Any], transport: Transport) -> None:
        self.p, self.record, self.transport = p, record, transport
        self.loss_sum, self.loss_n, self.stats_sum = 0.0, 0, {}
        self.eval_per_sample: dict[str, float] = {}
        self.policies = ["raw", "compressed"] if p.settings["eval_policy"] == "both" else [p.settings["eval_policy"]]
        self.t0 = time.perf_counter()

    def add(self, loss: float, stats: dict[str, float]) -> None:
        self.loss_sum, self.loss_n = self.loss_sum + loss, self.loss_n + 1
        for k, v in stats.items():
            self.stats_sum[k] = self.stats_sum.get(k, 0.0) + v

    def evaluate(self, step: int) -> None:
        p, m, nominal = self.p, self.transport.meter, self.record["nominal"]
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
        }
        for policy in self.policies:
            key = "acc" if policy == "raw" else "acc_compressed"
            if policy == "compressed" and p.pipeline.spec == p.raw_pipeline.spec and "acc" in entry:
                # The method is the raw pipeline itself (`none`): one pass serves both policies.
                entry[key], self.eval_per_sample[policy] = entry["acc"], self.eval_per_sample["raw"]
                continue
            entry[key], self.eval_per_sample[policy] = evaluate(
                p, self.transport, p.raw_pipeline if policy == "raw" else p.pipeline
            )
        if self.stats_sum:
            entry["stats"] = {k: round(v / max(self.loss_n, 1), 4) for k, v in self.stats_sum.items()}
        self.record["history"].append(entry)
        self.loss_sum, self.loss_n, self.stats_sum = 0.0, 0, {}

    def last_acc(self) -> str:
        return next((f"{h['acc']:.3f}" for h in reversed(self.record["history"]) if "acc" in h), "-")


def run(cfg: RunConfig, transport: Transport | None = None) -> dict[str, Any]:
    """Train one configuration; append its record to `cfg.out/<task>.jsonl`; return the record."""
    p = build_parties(cfg)
    record = new_record(cfg, p)
    warn_if_oversubscribed(p.runtime)
    transport = transport or Loopback()
    stop, history = StopRule(p.settings, record), _History(p, record, transport)
    steps_per_epoch = len(p.train_loader)
    eval_every = p.settings["eval_every"] or steps_per_epoch
    bar = _progress(cfg.progress, stop.total_steps(p.settings, steps_per_epoch), f"{cfg.task} {p.pipeline.spec}")
    step, stopped_by = 0, "epochs"
    try:
        for x, y in _batches(p.train_loader, p.settings["epochs"]):
            reason = stop.reason(step, transport.meter)
            if reason:
                stopped_by = reason
                break
            loss = train_step(p, transport, x, y, step)
            step += 1
            history.add(loss, p.client.stats)
            if step % eval_every == 0:
                history.evaluate(step)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}", acc=history.last_acc(), MB=f"{transport.meter.train_total / 1e6:.1f}", refresh=False
            )
        if not record["history"] or record["history"][-1]["step"] != step:
            history.evaluate(step)
        record["status"] = "completed"
    except BaseException as exc:  # keep what was measured, mark how it ended, then re-raise
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        finish_record(cfg, record, transport.meter, stopped_by, step, history)
    return record


def finish_record(
    cfg: RunConfig, record: dict[str, Any], m: Meter, stopped_by: str, step: int, history: _History
) -> None:
    """Summaries (final accuracy, bytes per direction and per sample, wall time); append the record."""
    samples = step * record["train"]["batch_size"]
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
        }
    )
    if cfg.out:
        out_path = Path(cfg.out) / f"{cfg.task}.jsonl"
        record["record_file"] = str(out_path)
        append_record(out_path, record)


def _progress(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True)
