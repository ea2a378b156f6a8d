"""Building a run's parties: every option checked before any data or weights load, then the task's
data, the split model, the method and the two roles; and the record's identity and provenance."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from adcbench.core.method import Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import SCHEMA, config_hash, provenance
from adcbench.data.imagetask import loader_workers
from adcbench.data.task import Task
from adcbench.errors import AdcbenchError, ParamError
from adcbench.model.backbones import build_backbone, check_init, probe_cut
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.checkpoint import resumable_loader
from adcbench.train.config import PRECISIONS, RunConfig, check_out, parse_device, resolve, wire_dtype
from adcbench.train.evaluation import eval_loaders as _eval_loaders
from adcbench.train.evaluation import say_warmstart
from adcbench.train.identity import build_task, identity
from adcbench.train.roles import Client, Server
from adcbench.train.runtime import compile_blocks, set_threads

__all__ = ["Parties", "build_parties", "new_record", "prepare", "seed_everything"]


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
    eval_loaders: dict[str, DataLoader]  # "history" (maybe a seeded subset) and "final" (the full split)
    eval_name: str
    model_info: dict[str, Any]
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)  # threads, compile, row_skip


def _device(cfg: RunConfig) -> torch.device:
    return parse_device(cfg.device)


def _pipelines(cfg: RunConfig) -> tuple[Pipeline, Pipeline]:
    """The method's pipeline and the raw (`none`) one, both ending in the run's wire dtype where
    the method leaves the terminal open; an explicit --wire-dtype the method cannot take is an error."""
    dtype = wire_dtype(cfg)
    pipeline = Pipeline.from_spec(cfg.method, dtype)
    if cfg.wire_dtype != "auto" and not pipeline.wire_dtype_applied:
        raise ParamError(
            f"--wire-dtype {cfg.wire_dtype}: {cfg.method} sets its own wire encoding (its last stage is "
            f"{pipeline.stages[-1].spec}); drop --wire-dtype or end the method in float:dtype=..."
        )
    return pipeline, Pipeline.from_spec("none", dtype)


def _loader_options(task: Task, device: torch.device) -> dict[str, Any]:
    """Workers as the task sets them -- on CUDA, for tasks that decode in workers at all, every CPU
    of this process's share of the machine (no cap: the GPU computes, the CPUs only feed it) --
    pinned host memory on CUDA (for non-blocking copies), workers kept alive across epochs and
    evaluations, each prefetching a few batches ahead."""
    cuda = device.type == "cuda"
    workers = task.num_workers
    if cuda and workers > 0:
        workers = loader_workers(most=None, share=torch.cuda.device_count())
    opts: dict[str, Any] = {"num_workers": workers, "pin_memory": cuda}
    if workers > 0:
        opts.update(persistent_workers=True, prefetch_factor=4)
    return opts


def prepare(cfg: RunConfig) -> tuple[Task, Pipeline, dict[str, Any], Cut, torch.device]:
    """Every option checked before any data or weights load: names and parameters, settings,
    device, the record folder, the split against the backbone's depth (on a weightless skeleton),
    and the method against the cut's shapes (so `xi=` resolves to its native setting here)."""
    task = build_task(cfg)
    pipeline, _ = _pipelines(cfg)
    settings = resolve(cfg, task)
    device = _device(cfg)
    if cfg.threads is not None and cfg.threads < 1:
        raise ParamError(f"threads={cfg.threads} is out of range; valid: integer >= 1")
    check_out(cfg.out)
    check_init(task, cfg.init or task.default_init, cfg.arch)
    _, n, d, prefix = probe_cut(task, cfg.arch, settings["split"])
    cut = Cut(n, d, task.num_classes, settings["batch_size"], prefix)
    with torch.random.fork_rng(devices=[]):  # set up again after seeding, where runs always did
        pipeline.setup(cut)
    if settings["budget_accounting"] == "nominal" and pipeline.nominal_ratio() is None:
        raise ParamError(f"{pipeline.spec} has no nominal ratio in the paper; use --budget-accounting measured")
    return task, pipeline, settings, cut, device


def build_parties(cfg: RunConfig) -> Parties:
    """Task, loaders, split model and roles; all settings are validated before any data loads."""
    task, pipeline, settings, cut, device = prepare(cfg)
    runtime = {**set_threads(cfg.threads), "compile": cfg.compile, "row_skip": cfg.row_skip}
    init = cfg.init or task.default_init
    seed_everything(cfg.seed)

    splits = task.splits(val_fraction=settings["val_fraction"])
    bs = settings["batch_size"]
    # shuffled, resumable mid-epoch; workers and pinning as the device wants them
    train_loader = resumable_loader(splits.train, bs, cfg.seed, **_loader_options(task, device))
    if len(train_loader) == 0:
        raise ParamError(f"batch_size={bs} exceeds the {len(splits.train)} training samples")  # type: ignore[arg-type]
    eval_loaders = _eval_loaders(splits.eval, settings, **_loader_options(task, device))

    vit, init_info = build_backbone(task, init, cfg.arch)
    if "warmstart" in init_info:
        say_warmstart(init_info)
    model_info = {
        "arch": cfg.arch or task.arch,
        "init": init,
        "depth": len(vit.blocks),  # type: ignore[arg-type]
        "params": sum(p.numel() for p in vit.parameters()),
        **init_info,
    }
    client_net, server_net = split_vit(vit, settings["split"], capture_attention=pipeline.needs_attention)
    client_net.to(device), server_net.to(device)
    if cut_shape(client_net, task.image_size, task.in_chans) != (cut.tokens, cut.dim):
        raise AdcbenchError("the backbone's cut shape differs from its skeleton's")  # an internal invariant
    if cfg.compile:
        compile_blocks(client_net, server_net)
    runtime["row_skip"] = cfg.row_skip and pipeline.selects_rows and client_net.can_skip_rows
    pipeline.setup(cut)
    for side in ("client", "server"):
        for m in pipeline.modules(side):
            m.to(device)
    raw_pipeline = Pipeline.from_spec("none", wire_dtype(cfg))
    raw_pipeline.setup(cut)
    dtype = PRECISIONS[cfg.precision]
    return Parties(
        task,
        settings,
        pipeline,
        raw_pipeline,
        cut,
        Client(client_net, pipeline, cut, settings["lr"], cfg.seed, device, dtype, row_skip=cfg.row_skip),
        Server(server_net, pipeline, cut, settings["lr"], cfg.seed, device, dtype),
        train_loader,
        eval_loaders,
        splits.eval_name,
        model_info,
        runtime,
    )


def new_record(cfg: RunConfig, p: Parties) -> dict[str, Any]:
    """The record's identity (what `config_hash` covers), provenance and accounting constants."""
    ident = identity(cfg, p.task, p.pipeline, p.settings)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        **ident,
        "model": {**p.model_info, **ident["model"]},  # depth, params, warm-start recipe: derived, not hashed
        "seed": cfg.seed,
        "config_hash": config_hash(ident),
        "cut": dataclasses.asdict(p.cut),
        "eval_split": p.eval_name,
        "data_info": p.task.data_info(),
        "analytic_bytes_per_step": dict(zip(("fwd", "bwd"), p.pipeline.analytic_bytes(p.settings["batch_size"]))),
        "provenance": provenance(cfg.device),
        "precision": {"compute": cfg.precision, "wire_dtype": wire_dtype(cfg), "sent_fwd": [], "sent_bwd": []},
        "runtime": p.runtime,  # how the machine was used; not identity (same numbers either way)
        "status": "running",
        "history": [],
    }
    achieved = p.pipeline.achieved_xi(p.settings["batch_size"])
    if achieved is not None:
        record["xi_achieved"] = achieved
    nominal = p.pipeline.nominal_ratio()
    base_step = 4 * p.settings["batch_size"] * p.cut.tokens * p.cut.dim  # the paper's C_Base per step and direction
    record["nominal"] = {
        "xi": nominal,
        "base_bytes_per_step": base_step,
        "bytes_per_step": None if nominal is None else nominal * base_step,
    }
    if "budget_base_epochs" in p.settings:
        record["budget"] = base_epochs_budget(p, base_step)
    return record


def base_message_bytes(cut: Cut, batch: int) -> tuple[int, int]:
    """Lengths of Base's (`none`, fp32) forward and backward messages for one training step."""
    base = Pipeline.from_spec("none", "float32")
    base.setup(cut)
    h = torch.zeros(batch, cut.tokens, cut.dim)
    ctx = Context(training=True, cut=cut, labels=torch.zeros(batch, dtype=torch.long))
    msg, _ = base.encode_forward(h, ctx)
    return len(base.pack(msg)), len(base.pack(base.encode_backward(h, ctx)))


def base_epochs_budget(p: Parties, base_step: int) -> dict[str, Any]:
    """`--budget-epochs E` in bytes: E epochs of Base (`none`, fp32) training traffic on this
    task and batch. Nominal accounting charges Base the paper's 2 * 4*B*n*d per step; measured,
    the length of Base's two messages, encoded here from a zero batch, so that `none` under
    `--budget-epochs E` trains exactly E epochs."""
    epochs = p.settings["budget_base_epochs"]
    steps = len(p.train_loader)  # full batches only (drop_last): every step costs the same
    if p.settings["budget_accounting"] == "nominal":
        step_bytes = 2 * base_step
    else:
        step_bytes = sum(base_message_bytes(p.cut, p.settings["batch_size"]))
    return {
        "base_epochs": epochs,
        "steps_per_epoch": steps,
        "base_step_bytes": step_bytes,
        "bytes": int(epochs * steps * step_bytes),
    }
