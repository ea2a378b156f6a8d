"""The training loop: build the parties, train over the wire, evaluate, write one record."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .errors import AdcbenchError, ParamError
from .method import Cut
from .pipeline import Pipeline
from .results import SCHEMA, append_record, config_hash, provenance
from .roles import Client, Server
from .split import cut_shape, split_vit
from .task import Task, get_task
from .transport import Loopback, Transport
from .wire import Message

EVAL_POLICIES = ("raw", "compressed", "both")


@dataclasses.dataclass
class RunConfig:
    method: str = "adc"
    task: str = "digits"
    task_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: str | None = None
    seed: int = 0
    epochs: int | None = None  # None: the task's default (ignored if budget_bytes is set)
    budget_bytes: int | None = None  # stop before training traffic (fwd+bwd) would exceed this
    # "measured": the budget counts bytes on the wire (the benchmark's own accounting).
    # "nominal": the paper's code accounting -- each step costs nominal_xi * (4*B*n*d) per
    # direction, labels and side information free -- to reproduce the published curves.
    budget_accounting: str = "measured"
    max_steps: int | None = None
    batch_size: int | None = None
    split: int | None = None
    lr: float | None = None
    eval_every: int | None = None  # steps; 0 = once per epoch
    eval_policy: str = "both"
    val_fraction: float = 0.0
    init: str | None = None  # None: the task's default (scratch, or pretrained for paper presets)
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    arch: str | None = None
    device: str = "cpu"
    out: str | None = "results"
    progress: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve(cfg: RunConfig, task: Task) -> dict[str, Any]:
    """Every setting of the run, defaults filled in from the task."""
    if cfg.eval_policy not in EVAL_POLICIES:
        raise ParamError(f"eval policy {cfg.eval_policy!r}; valid: {', '.join(EVAL_POLICIES)}")
    r = {
        "batch_size": cfg.batch_size or task.batch_size,
        "split": cfg.split or task.split_index,
        "lr": cfg.lr or task.lr,
        "epochs": cfg.epochs if cfg.epochs is not None else (None if cfg.budget_bytes else task.epochs),
        "budget_bytes": cfg.budget_bytes,
        "budget_accounting": cfg.budget_accounting,
        "max_steps": cfg.max_steps,
        "eval_every": task.eval_every if cfg.eval_every is None else cfg.eval_every,
        "eval_policy": cfg.eval_policy,
        "val_fraction": cfg.val_fraction,
        "optimizer": "adam",
    }
    for key, low in (("batch_size", 2), ("split", 1), ("eval_every", 0)):
        if r[key] < low:
            raise ParamError(f"{key}={r[key]} is out of range; valid: integer >= {low}")
    if not (r["lr"] > 0 and math.isfinite(r["lr"])):
        raise ParamError(f"lr={r['lr']} is out of range; valid: float > 0")
    if r["epochs"] is not None and r["epochs"] < 1:
        raise ParamError(f"epochs={r['epochs']} is out of range; valid: integer >= 1")
    if r["budget_accounting"] not in ("measured", "nominal"):
        raise ParamError(f"budget accounting {r['budget_accounting']!r}; valid: measured, nominal")
    if r["budget_bytes"] is not None and r["budget_bytes"] <= 0:
        raise ParamError("budget_bytes must be > 0")
    if not 0 <= r["val_fraction"] < 1:
        raise ParamError(f"val_fraction={r['val_fraction']} is out of range; valid: [0, 1)")
    return r


def run(cfg: RunConfig, transport: Transport | None = None) -> dict[str, Any]:
    """Train one configuration; append its record to `cfg.out/<task>.jsonl`; return the record."""
    task = get_task(cfg.task)(data=cfg.data, **cfg.task_params)
    pipeline = Pipeline.from_spec(cfg.method)
    settings = resolve(cfg, task)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdcbenchError("--device cuda, but no CUDA device is available here; use --device cpu")
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ParamError(f"threads={cfg.threads} is out of range; valid: integer >= 1")
        torch.set_num_threads(cfg.threads)
    init = cfg.init or task.default_init
    seed_everything(cfg.seed)

    # -- data and model ------------------------------------------------------------------------
    splits = task.splits(val_fraction=settings["val_fraction"])
    loader_gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(splits.train, batch_size=settings["batch_size"], shuffle=True, drop_last=True,
                              generator=loader_gen, num_workers=task.num_workers)
    eval_loader = DataLoader(splits.eval, batch_size=max(settings["batch_size"], 256), shuffle=False,
                             num_workers=task.num_workers)
    if len(train_loader) == 0:
        raise ParamError(f"batch_size={settings['batch_size']} exceeds the {len(splits.train)} training samples")
    vit = task.build_model(init, cfg.arch)
    model_info = {"arch": cfg.arch or task.arch, "init": init, "depth": len(vit.blocks),
                  "params": sum(p.numel() for p in vit.parameters())}
    model_info.update(task.init_info(init))
    client_net, server_net = split_vit(vit, settings["split"], capture_attention=pipeline.needs_attention)
    client_net.to(device), server_net.to(device)
    n, d = cut_shape(client_net, task.image_size, task.in_chans)
    cut = Cut(n, d, task.num_classes, settings["batch_size"], client_net.num_prefix_tokens)
    pipeline.setup(cut)
    for side in ("client", "server"):
        for m in pipeline.modules(side):
            m.to(device)
    client = Client(client_net, pipeline, cut, settings["lr"], cfg.seed, device)
    server = Server(server_net, pipeline, cut, settings["lr"], cfg.seed, device)
    transport = transport or Loopback()
    raw_pipeline = Pipeline.from_spec("none")
    raw_pipeline.setup(cut)
    policies = ["raw", "compressed"] if settings["eval_policy"] == "both" else [settings["eval_policy"]]
    # Where the method is the raw pipeline itself (`none`), one pass serves both policies.
    same_as_raw = pipeline.spec == raw_pipeline.spec

    identity = {"method": pipeline.spec, "stages": pipeline.resolved(), "task": cfg.task,
                "task_params": task.config, "data": cfg.data, "model": model_info, "train": settings}
    data_info = task.data_info()
    record: dict[str, Any] = {
        "schema": SCHEMA, **identity, "seed": cfg.seed, "config_hash": config_hash(identity),
        "cut": dataclasses.asdict(cut), "eval_split": splits.eval_name, "data_info": data_info,
        "analytic_bytes_per_step": dict(zip(("fwd", "bwd"), pipeline.analytic_bytes(settings["batch_size"]))),
        "provenance": provenance(cfg.device), "status": "running", "history": [],
    }
    eval_bytes_raw, eval_bytes_cmp = {}, {}
    nominal = pipeline.nominal_ratio()
    base_step = 4 * settings["batch_size"] * n * d  # the paper's C_Base per step and direction
    record["nominal"] = {"xi": nominal, "base_bytes_per_step": base_step,
                         "bytes_per_step": None if nominal is None else nominal * base_step}
    if settings["budget_accounting"] == "nominal" and nominal is None:
        raise ParamError(f"{pipeline.spec} has no nominal ratio in the paper; use --budget-accounting measured")

    def evaluate(step: int, epoch: float, loss: float, stats: dict[str, float], t0: float) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "step": step, "epoch": round(epoch, 4), "samples": step * settings["batch_size"],
            "bytes_fwd": transport.meter.bytes["fwd"], "bytes_bwd": transport.meter.bytes["bwd"],
            "nominal_bytes_each_way": None if nominal is None else step * nominal * base_step,
            "breakdown_fwd": dict(transport.meter.parts["fwd"]), "breakdown_bwd": dict(transport.meter.parts["bwd"]),
            "train_loss": loss, "wall_s": round(time.perf_counter() - t0, 3),
        }
        for policy in policies:
            if policy == "compressed" and same_as_raw and "acc" in entry:
                entry["acc_compressed"], eval_bytes_cmp["per_sample"] = entry["acc"], eval_bytes_raw["per_sample"]
                continue
            pipe = raw_pipeline if policy == "raw" else pipeline
            before = transport.meter.bytes["eval_fwd"]
            correct = total = 0
            for x, y in eval_loader:
                transport.send("eval_fwd", client.forward_eval(x, pipe))
                transport.send("eval_bwd", server.predict(transport.recv("eval_fwd"), pipe))
                pred = Message.decode(transport.recv("eval_bwd"))["pred"]
                correct += int((pred.long() == y).sum())  # type: ignore[union-attr]
                total += len(y)
            key = "acc" if policy == "raw" else "acc_compressed"
            entry[key] = correct / total
            (eval_bytes_raw if policy == "raw" else eval_bytes_cmp)["per_sample"] = \
                (transport.meter.bytes["eval_fwd"] - before) / total
        if stats:
            entry["stats"] = {k: round(v, 4) for k, v in stats.items()}
        return entry

    # -- the loop --------------------------------------------------------------------------------
    steps_per_epoch = len(train_loader)
    epochs = settings["epochs"] or 10**9
    total_steps = steps_per_epoch * (settings["epochs"] or 1)
    if settings["max_steps"]:
        total_steps = min(total_steps, settings["max_steps"]) if settings["epochs"] else settings["max_steps"]
    budget = settings["budget_bytes"]
    nominal_accounting = settings["budget_accounting"] == "nominal"
    per_step_estimate = 2 * nominal * base_step if nominal_accounting else sum(record["analytic_bytes_per_step"].values())
    if budget is not None and not settings["epochs"]:  # estimate for the bar
        total_steps = int(budget // max(1, per_step_estimate))
    eval_every = settings["eval_every"] or steps_per_epoch
    bar = _progress(cfg.progress, total_steps, f"{cfg.task} {pipeline.spec}")
    step, loss_sum, loss_n, stats_sum, stopped_by = 0, 0.0, 0, {}, "epochs"
    t0 = time.perf_counter()
    out_path = Path(cfg.out) / f"{cfg.task}.jsonl" if cfg.out else None
    try:
        for epoch in range(epochs):
            for x, y in train_loader:
                if nominal_accounting:
                    spent, step_bytes = 2 * step * nominal * base_step, 2 * nominal * base_step
                else:
                    spent, step_bytes = transport.meter.train_total, transport.meter.last["fwd"] + transport.meter.last["bwd"]
                if budget is not None and spent + step_bytes > budget:
                    stopped_by = "budget"
                    break
                if settings["max_steps"] and step >= settings["max_steps"]:
                    stopped_by = "max_steps"
                    break
                transport.send("fwd", client.forward(x, y, step))
                grad_msg, loss = server.train_step(transport.recv("fwd"), step)
                transport.send("bwd", grad_msg)
                client.backward(transport.recv("bwd"))
                step += 1
                loss_sum, loss_n = loss_sum + loss, loss_n + 1
                for k, v in client.stats.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + v
                if step % eval_every == 0:
                    stats = {k: v / loss_n for k, v in stats_sum.items()}
                    record["history"].append(evaluate(step, step / steps_per_epoch, loss_sum / loss_n, stats, t0))
                    loss_sum, loss_n, stats_sum = 0.0, 0, {}
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=_last(record, "acc"),
                                MB=f"{transport.meter.train_total / 1e6:.1f}", refresh=False)
            else:
                continue
            break
        if not record["history"] or record["history"][-1]["step"] != step:
            stats = {k: v / max(loss_n, 1) for k, v in stats_sum.items()}
            record["history"].append(evaluate(step, step / steps_per_epoch, loss_sum / max(loss_n, 1), stats, t0))
        record["status"] = "completed"
    except BaseException as exc:  # keep what was measured, mark how it ended, then re-raise
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        record.update(_summary(record, transport, steps_per_epoch, stopped_by, step, t0,
                               eval_bytes_raw, eval_bytes_cmp))
        if out_path is not None:
            record["record_file"] = str(out_path)
            append_record(out_path, record)
    return record


def _summary(record: dict, transport: Transport, steps_per_epoch: int, stopped_by: str, step: int,
             t0: float, eval_raw: dict, eval_cmp: dict) -> dict[str, Any]:
    m = transport.meter
    samples = step * record["train"]["batch_size"]
    final = record["history"][-1] if record["history"] else {}
    return {
        "final": {k: final.get(k) for k in ("step", "epoch", "acc", "acc_compressed", "train_loss")},
        "stopped_by": stopped_by if record["status"] == "completed" else record["status"],
        "steps": step,
        "bytes": {"fwd": m.bytes["fwd"], "bwd": m.bytes["bwd"], "messages_fwd": m.messages["fwd"],
                  "messages_bwd": m.messages["bwd"], "breakdown_fwd": m.parts["fwd"], "breakdown_bwd": m.parts["bwd"],
                  "per_sample_fwd": m.bytes["fwd"] / samples if samples else None,
                  "per_sample_bwd": m.bytes["bwd"] / samples if samples else None,
                  "eval_per_sample_raw": eval_raw.get("per_sample"),
                  "eval_per_sample_compressed": eval_cmp.get("per_sample")},
        "wall_s": round(time.perf_counter() - t0, 3),
    }


def _last(record: dict, key: str) -> str:
    for h in reversed(record["history"]):
        if key in h:
            return f"{h[key]:.3f}"
    return "-"


def _progress(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True)
