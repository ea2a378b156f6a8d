"""A run's configuration: what the user may set, and every setting resolved against the task."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from adcbench.core.devices import no_cuda, no_mps, not_a_device
from adcbench.core.params import check_final_eval
from adcbench.data.task import Task
from adcbench.errors import ParamError

EVAL_POLICIES = ("raw", "compressed", "both")
# The key each policy's accuracy is recorded under (history entries and `final`).
POLICY_KEY = {"raw": "acc", "compressed": "acc_compressed"}
EVAL_SCHEDULES = ("fixed", "log")
# "deployed": history evaluations only under the method's deployment policy (what the equal-bytes
# table and curves read); the final evaluation still runs every policy of `eval_policy`.
HISTORY_POLICIES = ("all", "deployed")
# Compute precision -> the dtype autocast computes in (fp32: no autocast).
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# What the activations and gradients cross the wire as, where the method leaves it open (its chain
# ends in the implicit float terminal). auto: the precision's compute dtype.
WIRE_DTYPES = ("auto", "float32", "bfloat16", "float16")
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


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
    # The byte budget in epochs of Base traffic on this task, as the paper states it (Γ = 10
    # epochs of Base): resolved once the train split's size is known (record["budget"]).
    budget_epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    split: int | None = None
    lr: float | None = None
    eval_every: int | None = None  # steps; 0 = once per epoch
    # "log": also evaluate at log-spaced steps (1, 2, 3, 4, 6, 8, 12, ...: x1.5), so accuracy at small
    # byte budgets can be read off the history (the leaderboard's equal-bytes table).
    eval_schedule: str = "fixed"
    eval_policy: str = "both"
    history_policy: str = "all"
    val_fraction: float = 0.0
    init: str | None = None  # None: the task's default (scratch, or pretrained for paper presets)
    threads: int | None = None  # torch intra-op threads (None: available cores / concurrent runs)
    compile: bool = False  # torch.compile the transformer blocks of both halves (docs/benchmarks/speed.md)
    row_skip: bool = True  # last client block only on the cut rows the method sends (exact)
    arch: str | None = None
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on both halves; fp16 adds a GradScaler per side)
    wire_dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (see WIRE_DTYPES)
    # History evaluations on a fixed seeded subset of this many eval samples (smoke runs); the
    # final evaluation uses the full split unless final_eval="subset".
    eval_samples: int | None = None
    final_eval: str = "full"
    # The final evaluation on a larger fixed subset (the first `final_eval_samples` of the same seeded
    # order, so it contains the history's subset) when the full split costs too much (the study).
    final_eval_samples: int | None = None
    out: str | None = "runs"  # ad-hoc runs: git-ignored, never the committed results/
    progress: bool = True
    # Resumable runs (adcbench.train.checkpoint): a folder turns checkpointing on; a checkpoint is
    # written every `checkpoint_every` steps (0: only at evaluations) and at every evaluation.
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    keep_checkpoints: bool = False


def check_out(out: str | None) -> None:
    """The record folder must be writable now, not after the whole run has been trained."""
    if not out:
        return
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ParamError(f"--out {out}: cannot write records there ({exc.strerror or type(exc).__name__})") from None


def parse_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `mps`, checked against this machine (one clear line otherwise;
    core/devices.py gives the same errors before torch loads, where it can)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise not_a_device(name) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise no_cuda(name)
        if device.index is not None and device.index >= count:
            raise ParamError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise no_mps(name)
    elif device.type != "cpu":
        raise not_a_device(name)
    return device


def wire_dtype(cfg: RunConfig) -> str:
    """The float dtype of the implicit terminal: `--wire-dtype`, or the compute dtype for `auto`."""
    if cfg.precision not in PRECISIONS:
        raise ParamError(f"precision {cfg.precision!r}; valid: {', '.join(PRECISIONS)}")
    if cfg.wire_dtype not in WIRE_DTYPES:
        raise ParamError(f"wire dtype {cfg.wire_dtype!r}; valid: {', '.join(WIRE_DTYPES)}")
    return _DTYPE_NAMES[PRECISIONS[cfg.precision]] if cfg.wire_dtype == "auto" else cfg.wire_dtype


def resolve(cfg: RunConfig, task: Task) -> dict[str, Any]:
    """Every setting of the run, defaults filled in from the task."""
    if cfg.eval_policy not in EVAL_POLICIES:
        raise ParamError(f"eval policy {cfg.eval_policy!r}; valid: {', '.join(EVAL_POLICIES)}")
    r: dict[str, Any] = {
        "batch_size": cfg.batch_size or task.batch_size,
        "split": cfg.split or task.split_index,
        "lr": cfg.lr or task.lr,
        "epochs": cfg.epochs
        if cfg.epochs is not None
        else (None if cfg.budget_bytes or cfg.budget_epochs else task.epochs),
        "budget_bytes": cfg.budget_bytes,
        "budget_accounting": cfg.budget_accounting,
        "max_steps": cfg.max_steps,
        "eval_every": task.eval_every if cfg.eval_every is None else cfg.eval_every,
        "eval_policy": cfg.eval_policy,
        "val_fraction": cfg.val_fraction,
        "optimizer": "adam",
    }
    if cfg.budget_epochs is not None:  # only then: records of byte budgets keep their config hash
        r["budget_base_epochs"] = cfg.budget_epochs
    if cfg.eval_samples is not None:  # only then: records of full evaluations keep their config hash
        r.update(eval_samples=cfg.eval_samples, final_eval=cfg.final_eval)
    if cfg.final_eval_samples is not None:  # only then, likewise
        r["final_eval_samples"] = cfg.final_eval_samples
    if cfg.eval_schedule not in EVAL_SCHEDULES:
        raise ParamError(f"eval schedule {cfg.eval_schedule!r}; valid: {', '.join(EVAL_SCHEDULES)}")
    if cfg.eval_schedule != "fixed":  # only then: records of the fixed schedule keep their config hash
        r["eval_schedule"] = cfg.eval_schedule
    if cfg.history_policy not in HISTORY_POLICIES:
        raise ParamError(f"history policy {cfg.history_policy!r}; valid: {', '.join(HISTORY_POLICIES)}")
    if cfg.history_policy != "all":  # only then: records of full histories keep their config hash
        r["history_policy"] = cfg.history_policy
    if cfg.precision != "fp32":  # fp32 stays out of the identity, so older fp32 records keep their hash
        r["precision"] = cfg.precision
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
    if cfg.budget_epochs is not None:
        if not (cfg.budget_epochs > 0 and math.isfinite(cfg.budget_epochs)):
            raise ParamError(f"budget_epochs={cfg.budget_epochs} is out of range; valid: float > 0")
        if cfg.budget_bytes is not None:
            raise ParamError("give one byte budget: budget_bytes or budget_epochs, not both")
    if cfg.eval_samples is not None and cfg.eval_samples < 1:
        raise ParamError(f"eval_samples={cfg.eval_samples} is out of range; valid: integer >= 1")
    if cfg.final_eval not in ("full", "subset"):
        raise ParamError(f"final eval {cfg.final_eval!r}; valid: full, subset")
    check_final_eval(cfg.final_eval_samples, cfg.eval_samples, cfg.final_eval)
    if not 0 <= r["val_fraction"] < 1:
        raise ParamError(f"val_fraction={r['val_fraction']} is out of range; valid: [0, 1)")
    return r
