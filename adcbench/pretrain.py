"""CPU warm start: train the unsplit, uncompressed model once and cache the checkpoint.

Split-learning runs on a CPU cannot afford to start from random weights every time, and the
paper's ImageNet-pretrained DeiTs are GPU-sized. `pretrain` trains the task's backbone with Adam
on the train split minus the held-out validation part (so tuning on `val_fraction <= 0.1` with the
same `val_seed` never sees warm-start training images), then writes

    $ADCBENCH_CACHE/warmstart/<task>-<arch>-<hash>.safetensors   (weights)
    $ADCBENCH_CACHE/warmstart/<task>-<arch>-<hash>.json          (recipe, accuracy, versions)

where the hash covers the task and its parameters, the backbone and its keywords, and the recipe.
`--init warmstart` loads the checkpoint of the task's default recipe."""

from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .cache import cache_dir, config_hash, write_json_atomic
from .errors import AdcbenchError, TrainingDivergedError
from .params import format_spec
from .task import Task, get_task

DEFAULT_SEED = 0
DEFAULT_VAL_FRACTION = 0.1


def default_recipe(task: Task) -> dict[str, Any]:
    preset = getattr(task, "preset", None)
    return {
        "epochs": getattr(preset, "warmstart_epochs", task.epochs),
        "lr": getattr(preset, "warmstart_lr", task.lr),
        "seed": DEFAULT_SEED,
        "batch_size": task.batch_size,
        "val_fraction": DEFAULT_VAL_FRACTION,
        "val_seed": 0,
        "optimizer": "adam",
    }


def _model_config(task: Task, arch: str | None) -> dict[str, Any]:
    return {"task": task.registry_name, "task_params": dict(task.config),
            "arch": arch or task.arch, "model_kwargs": task.model_kwargs(arch),
            "num_classes": task.num_classes}


def checkpoint_path(task: Task, arch: str | None = None, recipe: dict[str, Any] | None = None) -> Path:
    """Where the warm start of (task, backbone, recipe) lives; the recipe defaults to the task's."""
    recipe = recipe or default_recipe(task)
    key = config_hash({"model": _model_config(task, arch), "recipe": recipe})
    return cache_dir("warmstart") / f"{task.registry_name}-{arch or task.arch}-{key}.safetensors"


def pretrain_command(task: Task, recipe: dict[str, Any] | None = None, arch: str | None = None) -> str:
    """The `adcbench pretrain` command line for a task (and a recipe's non-default settings)."""
    spec = format_spec(task.registry_name, task.config, {p.name: p.default for p in task.params})
    cmd = f"adcbench pretrain --task {spec}" + (f" --data {task.data}" if task.data else "")
    if arch:
        cmd += f" --arch {arch}"
    default = default_recipe(task)
    for key, flag in (("epochs", "--epochs"), ("lr", "--lr"), ("seed", "--seed"),
                      ("batch_size", "--batch-size"), ("val_fraction", "--val-fraction"),
                      ("max_steps", "--max-steps")):
        if recipe is not None and key in recipe and recipe[key] != default.get(key):
            cmd += f" {flag} {recipe[key]:g}" if isinstance(recipe[key], float) else f" {flag} {recipe[key]}"
    return cmd


def find_warmstart(task: Task, arch: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The warm start of this task and backbone, with its sidecar metadata, or a clear error.

    Several recipes may have been pretrained for the same model: the task's default recipe wins,
    otherwise the most recently created one (the returned metadata says which recipe it was)."""
    import json

    default = checkpoint_path(task, arch)
    if default.is_file() and default.with_suffix(".json").is_file():
        return default, json.loads(default.with_suffix(".json").read_text())
    model = json.loads(json.dumps(_model_config(task, arch), default=str))
    found: list[tuple[str, Path, dict[str, Any]]] = []
    for sidecar in default.parent.glob(f"{task.registry_name}-*.json"):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        weights = sidecar.with_suffix(".safetensors")
        if meta.get("model") == model and weights.is_file():
            found.append((meta.get("created", ""), weights, meta))
    if not found:
        raise AdcbenchError(
            f"init=warmstart: no warm-start checkpoint for {task.registry_name} "
            f"({arch or task.arch}) yet; produce it with `{pretrain_command(task, arch=arch)}`")
    _, path, meta = max(found, key=lambda f: (f[0], str(f[1])))
    return path, meta


def _resolve_task(task: Task | str, data: str | None) -> Task:
    if isinstance(task, Task):
        return task
    from .params import parse_spec

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


def pretrain(task: Task | str, data: str | None = None, epochs: int | None = None,
             lr: float | None = None, seed: int = DEFAULT_SEED, *, arch: str | None = None,
             batch_size: int | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
             val_seed: int = 0, max_steps: int | None = None, force: bool = False,
             progress: bool = True) -> Path:
    """Train `task`'s unsplit backbone from scratch and cache it; return the checkpoint path.

    An existing checkpoint with the same key is reused unless `force`. `max_steps` stops early
    (for smoke tests); it is part of the recipe, so it never masquerades as a full warm start."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    task = _resolve_task(task, data)
    recipe = default_recipe(task)
    recipe.update({k: v for k, v in dict(epochs=epochs, lr=lr, batch_size=batch_size).items()
                   if v is not None})
    recipe.update(seed=seed, val_fraction=val_fraction, val_seed=val_seed)
    if max_steps is not None:
        recipe["max_steps"] = max_steps
    path = checkpoint_path(task, arch, recipe)
    if path.is_file() and path.with_suffix(".json").is_file() and not force:
        return path

    from .backbones import build_backbone

    torch.manual_seed(seed)
    model, _ = build_backbone(task, "scratch", arch)
    splits = task.splits(val_fraction, val_seed)
    bs = min(recipe["batch_size"], len(splits.train))
    loader = DataLoader(splits.train, batch_size=bs, shuffle=True, drop_last=True,
                        num_workers=task.num_workers,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    loss_fn = nn.CrossEntropyLoss()
    steps, start = 0, time.time()
    total = recipe["epochs"] * len(loader) if max_steps is None else min(max_steps, recipe["epochs"] * len(loader))
    bar = tqdm(total=total, desc=f"pretrain {task.registry_name}", disable=not progress, unit="step")
    for epoch in range(recipe["epochs"]):
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"pretrain {task.registry_name}: loss became {loss.item()} at step {steps}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    bar.close()
    test_acc = evaluate(model, splits.test, bs, task.num_workers)
    val_acc = evaluate(model, splits.eval, bs, task.num_workers) if splits.eval_name == "val" else None

    import timm

    import adcbench

    from .backbones import file_sha256

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
        "versions": {"adcbench": adcbench.__version__, "torch": torch.__version__,
                     "timm": timm.__version__, "python": platform.python_version()},
        "command": pretrain_command(task, recipe, arch),
    }
    write_json_atomic(path.with_suffix(".json"), meta)
    tmp.replace(path)  # weights last: a checkpoint file always has its sidecar
    return path


def _data_description(task: Task) -> Any:
    info = getattr(task, "data_info", None)
    if callable(info):
        return info()
    return {"source": task.source}
