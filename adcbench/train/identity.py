"""A run's identity: its fully resolved configuration, computable before any data or model loads.

The record's `config_hash` is the hash of this identity (the seed is kept apart, so the seeds of
one configuration share a hash); `run_id` adds the seed. A sweep decides done / resume / redo by
`run_id`, so every option that can change a result must be in the identity, and nothing that
cannot (where records go, progress bars, thread counts, checkpoint cadence) may be.

Options beyond the task-resolved training settings enter under `options` only when they differ
from their default, so adding a new option with a default never changes existing runs' hashes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import torch

from adcbench.core.method import Cut
from adcbench.core.pipeline import Pipeline
from adcbench.core.records import config_hash
from adcbench.data.task import Task, get_task
from adcbench.model.backbones import probe_cut
from adcbench.train.config import RunConfig, resolve, wire_dtype

# Fields that cannot change a run's result: where it writes, how it shows progress, how many CPU
# threads it uses (a sweep's --jobs sets them), how often it checkpoints.
NOT_IDENTITY = frozenset(
    {"seed", "out", "progress", "threads", "checkpoint_dir", "checkpoint_every", "keep_checkpoints"}
    # how fast, not what: compiled blocks and row skipping give the same numbers (record["runtime"])
    | {"compile", "row_skip"}
)
# Fields that enter the identity in resolved form (method spec, task parameters, model, settings).
RESOLVED = frozenset({"method", "task", "task_params", "data", "arch", "init"})


def build_task(cfg: RunConfig) -> Task:
    """The task object (parameters validated; no data is read)."""
    return get_task(cfg.task)(data=cfg.data, **cfg.task_params)


def identity(cfg: RunConfig, task: Task, pipeline: Pipeline, settings: dict[str, Any]) -> dict[str, Any]:
    """What defines the run, every default resolved; the record carries these keys at top level."""
    defaults = RunConfig()
    options = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name not in NOT_IDENTITY | RESOLVED
        and f.name not in settings
        and getattr(cfg, f.name) != getattr(defaults, f.name)
    }
    ident: dict[str, Any] = {
        "method": pipeline.spec,
        "stages": pipeline.resolved(),
        "task": cfg.task,
        "task_params": task.config,
        "data": cfg.data,
        "model": {"arch": cfg.arch or task.arch, "init": cfg.init or task.default_init},
        "train": settings,
    }
    if options:
        ident["options"] = options
    return ident


def plan_identity(cfg: RunConfig) -> dict[str, Any]:
    """The identity of `cfg` without loading anything; raises AdcbenchError on any invalid setting."""
    task = build_task(cfg)
    pipeline, settings = Pipeline.from_spec(cfg.method, wire_dtype(cfg)), resolve(cfg, task)
    if any(getattr(s, "target_xi", None) is not None for s in pipeline.stages):
        # A generic xi= resolves against the cut, as the run does (on a weightless skeleton).
        # Both steps take seconds and a sweep asks for the same few cuts hundreds of times.
        params = json.dumps(task.config, sort_keys=True, default=str)
        n, d, prefix = _cut_shape(cfg.task, params, cfg.arch, settings["split"])
        cut = Cut(n, d, task.num_classes, settings["batch_size"], prefix)
        pipeline = _set_up(cfg.method, wire_dtype(cfg), cut)
    return identity(cfg, task, pipeline, settings)


@functools.cache
def _cut_shape(task: str, params: str, arch: str | None, split: int) -> tuple[int, int, int]:
    _, n, d, prefix = probe_cut(get_task(task)(**json.loads(params)), arch, split)
    return n, d, prefix


@functools.cache
def _set_up(method: str, dtype: str, cut: Cut) -> Pipeline:
    """A pipeline set up on `cut`, for its spec and resolved stages only (never trained)."""
    pipeline = Pipeline.from_spec(method, dtype)
    with torch.random.fork_rng(devices=[]):
        pipeline.setup(cut)
    return pipeline


def identity_of_record(record: dict[str, Any]) -> dict[str, Any]:
    """The identity a record was written with (records older than `options` have none)."""
    model = record.get("model") or {}
    ident = {k: record.get(k) for k in ("method", "stages", "task", "task_params", "data", "train")}
    ident["model"] = {"arch": model.get("arch"), "init": model.get("init")}
    if record.get("options"):
        ident["options"] = record["options"]
    return {
        k: ident[k]
        for k in ("method", "stages", "task", "task_params", "data", "model", "train", "options")
        if k in ident
    }


def run_id(hash_: str, seed: int) -> str:
    """One run: a configuration and a seed."""
    return f"{hash_}-s{seed}"


def record_run_id(record: dict[str, Any]) -> str:
    return run_id(config_hash(identity_of_record(record)), int(record.get("seed", 0)))


def plan_run_id(cfg: RunConfig) -> tuple[str, dict[str, Any]]:
    ident = plan_identity(cfg)
    return run_id(config_hash(ident), cfg.seed), ident
