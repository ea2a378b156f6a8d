"""How a run uses the machine: torch threads that fit the cores this process may use, optional
torch.compile of the two halves, and the `runtime` entry of the record that says what was chosen.

None of these settings changes what is computed beyond fp32 rounding, so none is part of the
record's identity (`config_hash`); they are recorded next to it.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adcbench.errors import ParamError

# Set by whoever starts several runs at once on one machine (a parallel sweep): the cores are shared.
CONCURRENT_ENV = "ADCBENCH_CONCURRENT_RUNS"
_warned = False


def available_cores() -> float:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores: float = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return min(cores, quota) if quota else cores


def _cgroup_quota() -> float | None:
    """cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`; None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def concurrent_runs() -> int:
    try:
        return max(1, int(os.environ.get(CONCURRENT_ENV, "1")))
    except ValueError:
        raise ParamError(f"{CONCURRENT_ENV}={os.environ[CONCURRENT_ENV]!r} is not an integer >= 1") from None


def default_threads(cores: float | None = None, concurrent: int | None = None) -> int:
    """One thread per available core, shared among the concurrent runs (at least 1)."""
    cores = available_cores() if cores is None else cores
    concurrent = concurrent_runs() if concurrent is None else concurrent
    return max(1, math.floor(cores / concurrent))


def _omp_threads() -> int | None:
    """`OMP_NUM_THREADS` when it is a positive integer (torch reads it too, but a run sets its
    threads itself and would otherwise override it); None when unset or not a count."""
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def set_threads(requested: int | None) -> dict[str, Any]:
    """Apply `--threads`, else `OMP_NUM_THREADS`, else the default; say what was chosen and why
    (the record's `runtime`)."""
    if requested is not None and requested < 1:
        raise ParamError(f"threads={requested} is out of range; valid: integer >= 1")
    cores = available_cores()
    omp = _omp_threads()
    if requested is not None:
        threads, source = requested, "--threads"
    elif omp is not None:  # the user's (or test harness's) explicit choice for this process tree
        threads, source = omp, "OMP_NUM_THREADS"
    else:
        threads, source = default_threads(cores), "available cores / concurrent runs"
    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "threads": threads,
        "threads_from": source,
        "cores_available": cores,
        "concurrent_runs": concurrent_runs(),
        "load_1min": None if load is None else round(load, 2),
    }


def warn_if_oversubscribed(runtime: dict[str, Any]) -> None:
    """Once per process, when training starts (after every input was checked): a load average
    that leaves fewer cores than threads means the run's timings will suffer."""
    global _warned
    threads, cores, load = runtime["threads"], runtime["cores_available"], runtime["load_1min"]
    if _warned or load is None or load + threads <= cores + 0.5:
        return
    _warned = True
    hint = "; try --threads 1" if threads > 1 else ""
    warnings.warn(
        f"load average {load:.1f} on {cores:g} available cores: this run ({threads} torch thread(s)) "
        f"competes for CPU and may run several times slower{hint}",
        RuntimeWarning,
        stacklevel=2,
    )


def compile_blocks(*nets: nn.Module) -> None:
    """torch.compile every transformer block of the halves in place (the blocks are where the
    time goes; the method code between them stays eager, so its Python control flow costs no
    graph breaks). Row skipping runs its last client block eagerly, piece by piece."""
    for net in nets:
        for mod in net.modules():
            if type(mod).__name__ == "Block" and hasattr(mod, "attn"):
                mod.compile()
