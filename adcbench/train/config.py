"""A run's configuration: what the user may set, and every setting resolved against the task."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from adcbench.data.task import Task
from adcbench.errors import ParamError

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
    threads: int | None = None  # torch intra-op threads (None: available cores / concurrent runs)
    compile: bool = False  # torch.compile the transformer blocks of both halves (docs/benchmarks/speed.md)
    row_skip: bool = True  # last client block only on the cut rows the method sends (exact)
    arch: str | None = None
    device: str = "cpu"
    out: str | None = "results"
    progress: bool = True


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
