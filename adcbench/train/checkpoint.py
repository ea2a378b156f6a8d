"""Resumable training: a batch stream that can restart mid-epoch, and atomic checkpoints.

A checkpoint holds everything the rest of a run depends on -- both halves, both optimizers, the
method's own modules, every RNG (torch, numpy, python, the data order, the client's and server's
method generators), the byte meter and the history so far -- so a run killed at any point and
restarted continues to exactly the record an uninterrupted run writes (same device, same seed).

Format: `torch.save` of tensors, dicts, lists and numbers, read back with `weights_only=True`
(no arbitrary pickle), written to a temporary file and renamed into place. A small JSON sidecar
says the step, so a sweep's `--dry-run` can report "partial at step S" without loading weights.

Data order: the train loader is `DataLoader(shuffle=True, generator=g)` spelled out with a
batch sampler that can skip its first `k` batches (indices only; nothing is loaded), and the
stream records `g`'s state at the start of each epoch. Resuming sets that state and skips the
batches already trained on: the same permutation, the same worker seeds, the same batches.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

FORMAT = 1


class SkipBatchSampler(Sampler[list[int]]):
    """A batch sampler whose next pass drops its first `skip` batches (of indices: no data loads)."""

    def __init__(self, inner: BatchSampler) -> None:
        self.inner, self.skip = inner, 0

    def __iter__(self) -> Iterator[list[int]]:
        it, skip = iter(self.inner), self.skip
        self.skip = 0
        yield from itertools.islice(it, skip, None)

    def __len__(self) -> int:
        return len(self.inner)


def resumable_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0, **opts: Any) -> DataLoader:
    """The same batches, in the same order, as `DataLoader(dataset, batch_size, shuffle=True,
    drop_last=True, generator=Generator().manual_seed(seed))`, but able to resume mid-epoch."""
    g = torch.Generator().manual_seed(seed)
    order = RandomSampler(dataset, generator=g)  # type: ignore[arg-type]
    batches = SkipBatchSampler(BatchSampler(order, batch_size, drop_last=True))
    return DataLoader(dataset, batch_sampler=batches, generator=g, num_workers=num_workers, **opts)


class BatchStream:
    """`epochs` passes over a resumable loader (without end when epochs is None), keeping the
    position (epoch, batches into it, the generator's state at the epoch's start)."""

    def __init__(self, loader: DataLoader, epochs: int | None) -> None:
        assert isinstance(loader.batch_sampler, SkipBatchSampler), "use resumable_loader"
        self.loader, self.epochs = loader, epochs
        self.epoch, self.offset = 0, 0
        self.epoch_state: torch.Tensor | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g, sampler = self.loader.generator, self.loader.batch_sampler
        assert g is not None and isinstance(sampler, SkipBatchSampler)
        for epoch in range(self.epoch, self.epochs) if self.epochs else itertools.count(self.epoch):
            self.epoch, self.epoch_state = epoch, g.get_state().clone()
            sampler.skip = self.offset  # nonzero only for the epoch a resumed run is in
            for batch in self.loader:
                self.offset += 1
                yield batch
            self.offset = 0

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "epoch_state": self.epoch_state}

    def restore(self, state: dict[str, Any]) -> None:
        self.epoch, self.offset = state["epoch"], state["offset"]
        if state["epoch_state"] is not None:
            assert self.loader.generator is not None
            self.loader.generator.set_state(state["epoch_state"])


def rng_state(*generators: torch.Generator) -> dict[str, Any]:
    """torch (CPU and CUDA), numpy, python and the given generators, as weights-only-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": _to_lists(random.getstate()),
        "generators": [g.get_state() for g in generators],
    }
    return state


def set_rng_state(state: dict[str, Any], *generators: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_to_tuples(state["python"]))
    for g, s in zip(generators, state["generators"], strict=True):
        g.set_state(s)


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


class CheckpointFile:
    """`<dir>/<name>.pt` and its sidecar `<dir>/<name>.json`; written atomically, removed on demand."""

    def __init__(self, directory: str | os.PathLike, name: str) -> None:
        self.path = Path(directory) / f"{name}.pt"
        self.sidecar = self.path.with_suffix(".json")

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT:
            return None  # written by another version: start again rather than guess
        return state

    def save(self, state: dict[str, Any], summary: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            torch.save({"format": FORMAT, **state}, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        write_sidecar(self.sidecar, summary)

    def remove(self) -> None:
        for f in (self.path, self.sidecar):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def write_sidecar(path: Path, summary: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, path)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The step (and run id) of a checkpoint, or None where there is none."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class RunCheckpoint:
    """The training loop's checkpoints: where (`cfg.checkpoint_dir/<run id>.pt`), when (every
    `every` steps and at every evaluation), what (see the module docstring). Duck-typed over the
    loop's parties, meter and history so that this module stays below the loop."""

    def __init__(self, directory: str | None, run_name: str, every: int = 0, keep: bool = False) -> None:
        self.file = CheckpointFile(directory, run_name) if directory else None
        self.run_name, self.every, self.keep = run_name, every, keep

    def resume(self, p: Any, meter: Any, history: Any, stream: BatchStream) -> int:
        """Restore the latest checkpoint, if any; return the step to continue from (0: none)."""
        state = self.file.load() if self.file else None
        if state is None or state["run"] != self.run_name:
            return 0
        _load_modules(p, state)
        for key in ("bytes", "messages", "parts", "last"):
            getattr(meter, key).update(state["meter"][key])
        h = state["history"]
        history.loss_sum, history.loss_n, history.stats_sum = h["loss_sum"], h["loss_n"], dict(h["stats_sum"])
        history.eval_per_sample = dict(h["eval_per_sample"])
        history.record["history"][:] = h["entries"]
        history.t0 -= h["elapsed"]
        history.cpu0 -= h.get("cpu_elapsed", 0.0)  # checkpoints written before cpu_s existed: from here
        stream.restore(state["stream"])
        set_rng_state(state["rng"], p.client.generator, p.server.generator)
        return int(state["step"])

    def after_step(self, step: int, evaluated: bool, p: Any, meter: Any, history: Any, stream: BatchStream) -> None:
        if self.file and (evaluated or (self.every and step % self.every == 0)):
            self.save(step, p, meter, history, stream)

    def save(self, step: int, p: Any, meter: Any, history: Any, stream: BatchStream) -> None:
        assert self.file is not None
        state = {
            "run": self.run_name,
            "step": step,
            **_module_states(p),
            "rng": rng_state(p.client.generator, p.server.generator),
            "meter": {k: getattr(meter, k) for k in ("bytes", "messages", "parts", "last")},
            "history": {
                "loss_sum": history.loss_sum,
                "loss_n": history.loss_n,
                "stats_sum": history.stats_sum,
                "eval_per_sample": history.eval_per_sample,
                "entries": history.record["history"],
                "elapsed": time.perf_counter() - history.t0,
                "cpu_elapsed": time.process_time() - history.cpu0,
            },
            "stream": stream.state(),
        }
        self.file.save(state, {"run": self.run_name, "step": step})

    def finish(self) -> None:
        """The run's record is written: its checkpoint has served (unless kept on purpose)."""
        if self.file and not self.keep:
            self.file.remove()


def _module_states(p: Any) -> dict[str, Any]:
    return {
        "client": p.client.net.state_dict(),
        "server": p.server.net.state_dict(),
        "client_modules": [m.state_dict() for m in p.pipeline.modules("client")],
        "server_modules": [m.state_dict() for m in p.pipeline.modules("server")],
        "client_opt": p.client.opt.state_dict(),
        "server_opt": p.server.opt.state_dict(),
    }


def _load_modules(p: Any, state: dict[str, Any]) -> None:
    p.client.net.load_state_dict(state["client"])
    p.server.net.load_state_dict(state["server"])
    for side in ("client", "server"):
        for m, s in zip(p.pipeline.modules(side), state[f"{side}_modules"], strict=True):
            m.load_state_dict(s)
    p.client.opt.load_state_dict(state["client_opt"])
    p.server.opt.load_state_dict(state["server_opt"])
