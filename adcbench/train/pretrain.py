"""CPU warm start, the training half: train the unsplit, uncompressed model once and cache it.

The checkpoint's key, path and lookup live in `adcbench.model.warmstart`; see its docstring.
"""

from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from adcbench.core.cache import write_json_atomic
from adcbench.core.params import parse_spec
from adcbench.core.records import adcbench_version, code_state, provenance
from adcbench.data.task import Task, get_task
from adcbench.errors import ParamError, TrainingDivergedError
from adcbench.model.backbones import build_backbone, file_sha256
from adcbench.model.warmstart import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    _model_config,
    checkpoint_path,
    default_recipe,
    find_warmstart,
    pretrain_command,
)
from adcbench.train.checkpoint import (
    BatchStream,
    CheckpointFile,
    read_sidecar,
    resumable_loader,
    rng_state,
    set_rng_state,
)
from adcbench.train.runtime import set_threads

__all__ = ["pretrain", "evaluate", "checkpoint_path", "default_recipe", "find_warmstart", "pretrain_command"]


def _resolve_task(task: Task | str, data: str | None) -> Task:
    if isinstance(task, Task):
        return task
    [(name, params)] = parse_spec(task)
    return get_task(name)(data=data, **params)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, batch_size: int, num_workers: int = 0) -> float:
    model.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        correct += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return correct / max(1, total)


def pretrain(
    task: Task | str,
    data: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = DEFAULT_SEED,
    *,
    arch: str | None = None,
    batch_size: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    val_seed: int = 0,
    max_steps: int | None = None,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: int = 200,
    threads: int | None = None,
) -> Path:
    """Train `task`'s unsplit backbone from scratch and cache it; return the checkpoint path.

    An existing checkpoint with the same key is reused unless `force`. `max_steps` stops early
    (for smoke tests); it is part of the recipe, so it never masquerades as a full warm start.
    Every `checkpoint_every` steps the state is saved next to the cache entry; a run killed and
    started again continues from there to the same weights (0: no checkpoints). `threads` as a
    run's `--threads`: the weights' bits depend on torch's thread count (float reductions), so it is
    recorded, named in the regenerating command, and a resume at another count is refused."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    task = _resolve_task(task, data)
    recipe = default_recipe(task)
    recipe.update({k: v for k, v in dict(epochs=epochs, lr=lr, batch_size=batch_size).items() if v is not None})
    recipe.update(seed=seed, val_fraction=val_fraction, val_seed=val_seed)
    if max_steps is not None:
        recipe["max_steps"] = max_steps
    path = checkpoint_path(task, arch, recipe)
    if path.is_file() and path.with_suffix(".json").is_file() and not force:
        made = (read_sidecar(path.with_suffix(".json")) or {}).get("threads")
        if threads is not None and made != threads:  # asked for other bits than the cached ones
            raise ParamError(
                f"{path} was trained at {made or 'an unrecorded number of'} torch thread(s), not {threads}: "
                "omit --threads to use it, or train it again with --force"
            )
        return path

    runtime = set_threads(threads)
    code_state()  # the commit of the code this process loaded, read now: commits may land for hours
    # Hours on a CPU: a killed pretraining resumes from its last checkpoint (unless `force`).
    resume = CheckpointFile(path.parent, f"{path.stem}.resume")
    if force:
        resume.remove()
    _check_resume_threads(resume, runtime["threads"])  # before any data or model is loaded
    torch.manual_seed(seed)
    model, _ = build_backbone(task, "scratch", arch)
    splits = task.splits(val_fraction, val_seed)
    bs = min(recipe["batch_size"], len(splits.train))  # type: ignore[arg-type]
    batches = BatchStream(resumable_loader(splits.train, bs, seed, task.num_workers), recipe["epochs"])
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    steps, elapsed = _resume(resume, model, opt, batches)
    start = time.time() - elapsed
    total = recipe["epochs"] * len(batches.loader)
    total = total if max_steps is None else min(max_steps, total)
    bar = tqdm(total=total, initial=steps, desc=f"pretrain {task.registry_name}", disable=not progress, unit="step")
    save = lambda n: _save(resume, n, model, opt, batches, start, checkpoint_every, runtime["threads"])  # noqa: E731
    steps = _train(task, model, opt, batches, bar, steps, max_steps, save)
    bar.close()
    test_acc = evaluate(model, splits.test, bs, task.num_workers)
    val_acc = evaluate(model, splits.eval, bs, task.num_workers) if splits.eval_name == "val" else None

    import timm

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta = {
        "recipe": recipe,
        "model": _model_config(task, arch),
        "data": _data_description(task),
        "steps": steps,
        "train_seconds": round(time.time() - start, 1),
        "final_test_accuracy": test_acc,
        "final_val_accuracy": val_acc,
        "sha256": file_sha256(tmp),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "adcbench": adcbench_version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "python": platform.python_version(),
        },
        "threads": runtime["threads"],
        "runtime": runtime,
        "provenance": provenance("cpu"),  # the code (git commit) that made these bits
        "command": pretrain_command(task, recipe, arch, threads=runtime["threads"]),
    }
    write_json_atomic(path.with_suffix(".json"), meta)
    tmp.replace(path)  # weights last: a checkpoint file always has its sidecar
    resume.remove()
    return path


def _train(
    task: Task,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batches: BatchStream,
    bar: Any,
    steps: int,
    max_steps: int | None,
    after_step: Any,
) -> int:
    loss_fn = nn.CrossEntropyLoss()
    for x, y in batches:
        if max_steps is not None and steps >= max_steps:
            break
        model.train()
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"pretrain {task.registry_name}: loss became {loss.item()} at step {steps}; lower --lr"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        bar.update(1)
        bar.set_postfix(epoch=batches.epoch, loss=f"{loss.item():.3f}")
        after_step(steps)
    return steps


def _save(
    resume: CheckpointFile,
    steps: int,
    model: nn.Module,
    opt: Any,
    batches: BatchStream,
    start: float,
    every: int,
    threads: int,
) -> None:
    if every and steps % every == 0:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng_state(), "steps": steps}
        state.update(stream=batches.state(), elapsed=time.time() - start)
        resume.save(state, {"step": steps, "threads": threads})  # the sidecar: read before any data loads


def _check_resume_threads(resume: CheckpointFile, threads: int) -> None:
    """A resume at another thread count would continue with other float reductions: the weights
    would match neither an uninterrupted run at the old count nor one at the new."""
    began = (read_sidecar(resume.sidecar) or {}).get("threads", threads)  # older files: as asked
    if began != threads:
        raise ParamError(
            f"this warm start began at {began} torch thread(s), not {threads}: resume it with "
            f"--threads {began} (the weights' bits depend on the thread count) or start over with --force"
        )


def _resume(
    resume: CheckpointFile, model: nn.Module, opt: torch.optim.Optimizer, batches: BatchStream
) -> tuple[int, float]:
    """Restore a killed pretraining's model, optimizer, RNGs and data position; (steps, seconds)."""
    state = resume.load()
    if state is None:
        return 0, 0.0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    set_rng_state(state["rng"])
    batches.restore(state["stream"])
    return int(state["steps"]), float(state["elapsed"])


def _data_description(task: Task) -> Any:
    info = getattr(task, "data_info", None)
    if callable(info):
        return info()
    return {"source": task.source}
