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

from adcbench.errors import AdcbenchError
from adcbench.model.initspec import is_warmstart_init
from adcbench.model.warmstart import find_warmstart, warmstart_source
from adcbench.sweep.grid import Run, SweepError
from adcbench.train.checkpoint import read_sidecar
from adcbench.train.identity import build_task, record_run_id


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


def check_warm_starts(runs: list[Run], states: list[Status]) -> None:
    """Refuse to add runs from another warm start to results that already hold runs of the same
    task and --init: the run id names the init (`warmstart:cifar10`), not its weights, so on a
    machine whose warm start came out differently (another thread count, code or data) the new
    seeds would silently be averaged with the old ones over two different backbones."""
    cache: dict[Path, dict[str, dict]] = {}
    checked: set[tuple[Path, str, str]] = set()
    for run, state in zip(runs, states):
        init = run.cfg.init
        path = Path(run.cfg.out or "results") / f"{run.cfg.task}.jsonl"
        if state.state == "done" or not init or not is_warmstart_init(init) or (path, run.cfg.task, init) in checked:
            continue
        checked.add((path, run.cfg.task, init))
        if path not in cache:
            cache[path] = _records(path)
        old = {
            r["model"]["sha256"]: r
            for r in cache[path].values()
            if r.get("status") == "completed" and r.get("model", {}).get("init") == init and r["model"].get("sha256")
        }
        if not old:
            continue
        try:
            task = build_task(run.cfg)
            where, meta = find_warmstart(warmstart_source(task, init, run.cfg.arch), run.cfg.arch)
        except AdcbenchError:
            continue  # no warm start here yet: the run itself says how to make one
        if meta.get("sha256") not in old:
            sha, rec = next(iter(old.items()))
            raise SweepError(
                f"{path} holds {run.cfg.task} runs from --init {init} with warm start sha256 {sha[:12]}, "
                f"but this machine's ({where}) is {str(meta.get('sha256'))[:12]}: new seeds would be averaged "
                f"over two backbones. Regenerate that warm start ({rec['model'].get('warmstart', {}).get('command')}) "
                "or sweep into another --out"
            )


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
