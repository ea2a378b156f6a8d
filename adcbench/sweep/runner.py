"""Running a sweep: skip what is done, resume what is partial, report progress and failures."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from adcbench.sweep.grid import Run
from adcbench.sweep.launch import Outcome
from adcbench.sweep.state import checkpoint_dir, statuses
from adcbench.train.checkpoint import CheckpointFile


@dataclasses.dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Run, str]] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return f"sweep: {self.done} done, {self.skipped} skipped, {len(self.failed)} failed"


def prepare(runs: list[Run], every: int, keep: bool) -> list[Run]:
    """Every run checkpoints (to `<out>/checkpoints` unless a folder is set)."""
    return [
        dataclasses.replace(
            r,
            cfg=dataclasses.replace(
                r.cfg, checkpoint_dir=checkpoint_dir(r), checkpoint_every=every, keep_checkpoints=keep
            ),
        )
        for r in runs
    ]


def dry_run(runs: list[Run], echo: Callable[[str], None]) -> dict[str, int]:
    """One line per run (config hash, seed, spec, task, status) and the totals."""
    counts: dict[str, int] = {}
    for run, st in zip(runs, statuses(runs)):
        counts[st.state] = counts.get(st.state, 0) + 1
        echo(f"{run.config_hash}  seed={run.cfg.seed:<3} {run.spec:<32} {run.cfg.task:<12} {st}")
    echo(f"total: {len(runs)} runs (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ")")
    return counts


def run_sweep(
    runs: list[Run],
    launcher: Any,
    echo: Callable[[str], None],
    *,
    rerun: bool = False,
    fail_fast: bool = False,
    progress: bool = True,
    report: Callable[[dict[str, Any]], str] | None = None,
) -> Summary:
    summary = Summary()
    todo: list[Run] = []
    partial = 0
    for run, st in zip(runs, statuses(runs)):
        if st.state == "done" and not rerun:
            summary.skipped += 1
            continue
        if rerun:  # forced: from scratch, not from a checkpoint
            CheckpointFile(run.cfg.checkpoint_dir or checkpoint_dir(run), run.run_id).remove()
        partial += st.state == "partial" and not rerun
        todo.append(run)
    echo(f"sweep: {len(runs)} runs, {summary.skipped} already done, {len(todo)} to run ({partial} from a checkpoint)")
    bar = _bar(progress, len(todo))
    t0 = time.perf_counter()

    def on_done(run: Run, outcome: Outcome) -> bool:
        bar.update(1)
        if outcome.status == "completed":
            summary.done += 1
            line = report(outcome.record) if report and outcome.record else run.label
            bar.write(f"[{summary.done + len(summary.failed)}/{len(todo)}] {line}")
            return True
        summary.failed.append((run, outcome.error or "failed"))
        bar.write(f"[{summary.done + len(summary.failed)}/{len(todo)}] FAILED {run.label}: {outcome.error}")
        return not fail_fast

    try:
        if todo:
            launcher.launch(todo, on_done)
    finally:
        bar.close()
    echo(summary.line() + f" in {time.perf_counter() - t0:.0f} s")
    for run, error in summary.failed:
        echo(f"  failed: {run.label} ({run.run_id}): {error}")
    return summary


def _bar(enabled: bool, total: int) -> Any:
    """The sweep's bar: runs done / total, elapsed, and an ETA from the runs finished so far."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="run", position=0, disable=not enabled, dynamic_ncols=True)
