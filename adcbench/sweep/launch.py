"""Launchers: where the runs of a sweep execute. Each calls `execute` once per run.

- `local`: in this process one after another, or `--jobs N` worker processes at once (threads
  per run = cores // N unless set). Runs append their own records.
- `ray`: one Ray task per run on the cluster at `--address` / `RAY_ADDRESS`, or a local Ray.
  Records are returned to the driver, which appends them: the results file has one writer and
  workers need no shared filesystem for results (checkpoints, for resuming, do need one).
- `slurm`: one job per run, submitted as a job array through submitit. SLURM clusters share a
  filesystem with the submitting host (submitit requires it), so jobs append their own records.

The engines are optional extras (`pip install -e ".[ray]"`, `".[slurm]"`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adcbench.core.records import append_record
from adcbench.sweep.grid import Run, SweepError, one_line
from adcbench.train.config import RunConfig
from adcbench.train.loop import run as train_run
from adcbench.train.runtime import CONCURRENT_ENV

OnDone = Callable[[Run, "Outcome"], bool]  # returns False to stop the sweep (--fail-fast)


@dataclasses.dataclass
class Outcome:
    status: str  # completed | failed
    error: str | None = None
    record: dict[str, Any] | None = None


def execute(cfg: RunConfig) -> Outcome:
    """One run, its failure caught: a failing run never stops the sweep by itself."""
    try:
        return Outcome("completed", record=train_run(cfg))
    except Exception as exc:  # noqa: BLE001 -- every failure is reported, one line each
        return Outcome("failed", f"{type(exc).__name__}: {one_line(exc)}")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


PARENT_POLL_S = 0.5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's: cannot be our sweep, but it is not gone either
        return True
    return True


def _init_worker(parent: int, jobs: int) -> None:
    """Worker initializer: the run's record says how many runs shared the machine with it (its
    wall time means nothing without that), then the parent watch below."""
    os.environ[CONCURRENT_ENV] = str(jobs)
    _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """A watchdog thread ends this worker as soon as the sweep process that
    started it is gone (killed, or crashed): orphaned workers would go on training and appending
    records nobody waits for. The run's checkpoint, if any, lets the next sweep resume it.
    Workers are the fork server's children: when the sweep dies the server exits and the worker
    is re-parented, which the watch sees at once; the sweep's own pid is checked as well."""
    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server and _alive(parent):
            time.sleep(PARENT_POLL_S)
        os._exit(143)  # as a SIGTERM would: no record for a run its sweep no longer waits on

    threading.Thread(target=watch, name="adcbench-parent-watch", daemon=True).start()


class Local:
    def __init__(self, jobs: int = 1) -> None:
        self.jobs = jobs

    def launch(self, runs: list[Run], on_done: OnDone) -> None:
        if self.jobs <= 1:
            for run in runs:
                if not on_done(run, execute(run.cfg)):
                    return
            return
        threads = max(1, cores() // self.jobs)
        # torch and fork do not mix, but a fork server does: a fresh process that has only imported
        # the training stack (torch, timm, the data layer; no threads, no CUDA) forks each worker,
        # so N workers cost one import (seconds) instead of N.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["adcbench.sweep.launch"])
        init = (os.getpid(), self.jobs)
        with cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
            futures = {
                pool.submit(execute, dataclasses.replace(r.cfg, threads=r.cfg.threads or threads, progress=False)): r
                for r in runs
            }
            for fut in cf.as_completed(futures):
                if not on_done(futures[fut], fut.result()):
                    pool.shutdown(cancel_futures=True)
                    return


def _absolute(cfg: RunConfig, **kw: Any) -> RunConfig:
    """Workers may start elsewhere: every path they use is made absolute first."""
    paths = {k: str(Path(v).resolve()) for k in ("out", "checkpoint_dir", "data") if (v := getattr(cfg, k))}
    return dataclasses.replace(cfg, **{**paths, "progress": False, **kw})


class Ray:
    def __init__(self, address: str | None = None, cpus: float = 1, gpus: float = 0) -> None:
        try:
            import ray
        except ImportError:
            raise SweepError('--launcher ray needs Ray: pip install -e ".[ray]"') from None
        self.ray, self.address, self.cpus, self.gpus = ray, address or os.environ.get("RAY_ADDRESS"), cpus, gpus

    def launch(self, runs: list[Run], on_done: OnDone) -> None:
        ray = self.ray
        local = {} if self.address else {"num_cpus": max(cores(), int(self.cpus))}
        ray.init(address=self.address, include_dashboard=False, ignore_reinit_error=True, **local)
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(execute)
        threads = max(1, int(self.cpus))
        pending = {}
        for r in runs:  # records come back to the driver: workers write none
            pending[task.remote(_absolute(r.cfg, out=None, threads=r.cfg.threads or threads))] = r
        try:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                run, outcome = pending.pop(ref), ray.get(ref)
                if outcome.record is not None:
                    outcome.record["record_file"] = str(Path(run.cfg.out or "results") / f"{run.cfg.task}.jsonl")
                    append_record(outcome.record["record_file"], outcome.record)
                if not on_done(run, outcome):
                    for ref in pending:
                        ray.cancel(ref)
                    return
        finally:
            if not self.address:
                ray.shutdown()


class Slurm:
    def __init__(
        self,
        folder: str,
        partition: str | None = None,
        time_min: int = 240,
        gpus: int = 0,
        cpus: int = 1,
        array_parallelism: int = 64,
        cluster: str | None = None,
    ) -> None:
        try:
            import submitit
        except ImportError:
            raise SweepError('--launcher slurm needs submitit: pip install -e ".[slurm]"') from None
        self.submitit, self.folder, self.cluster = submitit, folder, cluster
        self.params: dict[str, Any] = dict(
            timeout_min=time_min, gpus_per_node=gpus, cpus_per_task=cpus, slurm_array_parallelism=array_parallelism
        )
        if partition:
            self.params["slurm_partition"] = partition

    def executor(self) -> Any:
        ex = self.submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        ex.update_parameters(name="adcbench-sweep", **self.params)
        return ex

    def launch(self, runs: list[Run], on_done: OnDone) -> None:
        threads = max(1, self.params["cpus_per_task"])
        cfgs = [_absolute(r.cfg, threads=r.cfg.threads or threads) for r in runs]
        jobs = self.executor().map_array(execute, cfgs)
        by_id = {j.job_id: r for j, r in zip(jobs, runs)}
        for job in self.submitit.helpers.as_completed(jobs):
            try:
                outcome = job.result()
            except Exception as exc:  # noqa: BLE001 -- the job itself died (time limit, node failure)
                outcome = Outcome("failed", f"job {job.job_id}: {one_line(exc)}")
            if not on_done(by_id[job.job_id], outcome):
                for j in jobs:
                    j.cancel(check=False)
                return
