"""Where each run of a grid stands (done / partial at step S / failed / todo), and shards.

A run is its `run_id` (config hash of the fully resolved configuration + seed). Records are
matched by recomputing the hash from the identity keys they carry, so records written before a
field joined the identity (or by another version) are still recognised when they are the same run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from adcbench.sweep.grid import Run, SweepError
from adcbench.train.checkpoint import read_sidecar
from adcbench.train.identity import record_run_id


def checkpoint_dir(run: Run) -> str:
    """Checkpoints live next to the records unless a folder is given: `<out>/checkpoints`."""
    return run.cfg.checkpoint_dir or str(Path(run.cfg.out or "results") / "checkpoints")


@dataclasses.dataclass
class Status:
    state: str  # done | partial | failed | todo
    step: int | None = None
    error: str | None = None

    def __str__(self) -> str:
        return f"partial at step {self.step}" if self.state == "partial" else self.state


def _records(path: Path) -> dict[str, dict]:
    """run id -> the record that decides its state (a completed one wins over later failures)."""
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            rid = record_run_id(rec)
        except (ValueError, TypeError, AttributeError):
            continue  # a corrupt or foreign line decides nothing
        if out.get(rid, {}).get("status") != "completed":
            out[rid] = rec
    return out


def statuses(runs: list[Run]) -> list[Status]:
    """The state of every run, from its task's records and its checkpoint sidecar."""
    cache: dict[Path, dict[str, dict]] = {}
    out = []
    for run in runs:
        path = Path(run.cfg.out or "results") / f"{run.cfg.task}.jsonl"
        if path not in cache:
            cache[path] = _records(path)
        rec = cache[path].get(run.run_id)
        side = read_sidecar(Path(checkpoint_dir(run)) / f"{run.run_id}.json")
        if rec and rec.get("status") == "completed":
            out.append(Status("done"))
        elif side and side.get("run") == run.run_id:
            out.append(Status("partial", int(side["step"])))
        elif rec:
            out.append(Status("failed", error=rec.get("error")))
        else:
            out.append(Status("todo"))
    return out


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`i/n` with 0 <= i < n (SLURM array and Kubernetes job indices count from 0)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise SweepError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def shard(runs: list[Run], which: tuple[int, int] | None) -> list[Run]:
    """Shard i of n: every n-th run of the grid from the i-th. Deterministic (the grid's order is
    the file's), balanced (sizes differ by at most one), and the shards partition the grid."""
    if which is None:
        return runs
    i, n = which
    return runs[i::n]
