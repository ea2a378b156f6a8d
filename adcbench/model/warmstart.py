"""CPU warm start, the lookup half: where a task's warm-start checkpoint lives and how to find it.

`adcbench.train.pretrain` trains and writes the checkpoint; this module only keys and finds it,
so building a backbone (`--init warmstart`) never imports the training code.


Split-learning runs on a CPU cannot afford to start from random weights every time, and the
paper's ImageNet-pretrained DeiTs are GPU-sized. `pretrain` trains the task's backbone with Adam
on the train split minus the held-out validation part (so tuning on `val_fraction <= 0.1` with the
same `val_seed` never sees warm-start training images), then writes

    $ADCBENCH_CACHE/warmstart/<task>-<arch>-<hash>.safetensors   (weights)
    $ADCBENCH_CACHE/warmstart/<task>-<arch>-<hash>.json          (recipe, accuracy, versions)

where the hash covers the task and its parameters, the backbone and its keywords, and the recipe.
`--init warmstart` loads the checkpoint of the task's default recipe. `--init warmstart:SPEC`
loads another task's (`warmstart:cifar10`, `warmstart:imagenette:preset=cpu32`): a warm start
trained on a different dataset, as the paper fine-tunes an ImageNet-pretrained DeiT on CIFAR-100.
Its backbone must be the run's (same arch and keywords); a head of another size is re-created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adcbench.core.cache import cache_dir, config_hash
from adcbench.core.params import format_spec, parse_spec
from adcbench.data.task import Task, get_task
from adcbench.errors import AdcbenchError

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
    return {
        "task": task.registry_name,
        "task_params": dict(task.config),
        "arch": arch or task.arch,
        "model_kwargs": task.model_kwargs(arch),
        "num_classes": task.num_classes,
    }


def checkpoint_path(task: Task, arch: str | None = None, recipe: dict[str, Any] | None = None) -> Path:
    """Where the warm start of (task, backbone, recipe) lives; the recipe defaults to the task's."""
    recipe = recipe or default_recipe(task)
    key = config_hash({"model": _model_config(task, arch), "recipe": recipe})
    return cache_dir("warmstart") / f"{task.registry_name}-{arch or task.arch}-{key}.safetensors"


def pretrain_command(
    task: Task, recipe: dict[str, Any] | None = None, arch: str | None = None, threads: int | None = None
) -> str:
    """The `adcbench pretrain` command line for a task (and a recipe's non-default settings, and
    the thread count that reproduces its bits)."""
    spec = format_spec(task.registry_name, task.config, {p.name: p.default for p in task.params})
    cmd = f"adcbench pretrain --task {spec}" + (f" --data {task.data}" if task.data else "")
    if arch:
        cmd += f" --arch {arch}"
    default = default_recipe(task)
    for key, flag in (
        ("epochs", "--epochs"),
        ("lr", "--lr"),
        ("seed", "--seed"),
        ("batch_size", "--batch-size"),
        ("val_fraction", "--val-fraction"),
        ("max_steps", "--max-steps"),
    ):
        if recipe is not None and key in recipe and recipe[key] != default.get(key):
            cmd += f" {flag} {recipe[key]:g}" if isinstance(recipe[key], float) else f" {flag} {recipe[key]}"
    return cmd + (f" --threads {threads}" if threads is not None else "")


def describe_recipe(recipe: dict[str, Any]) -> str:
    """`epochs=10 lr=0.001 batch_size=128 seed=0` (+ `max_steps=5` for a partial recipe)."""
    keys = ("epochs", "max_steps", "lr", "batch_size", "seed", "val_fraction")
    return " ".join(
        f"{k}={recipe[k]:g}" if isinstance(recipe[k], float) else f"{k}={recipe[k]}" for k in keys if k in recipe
    )


def is_partial(recipe: dict[str, Any]) -> bool:
    """A recipe cut short by max_steps (a smoke pretrain): never a warm start by default."""
    return recipe.get("max_steps") is not None


def find_warmstart(task: Task, arch: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The warm start of this task and backbone, with its sidecar metadata, or a clear error.

    Checkpoints are identified by their full recipe. The task's default recipe wins; otherwise
    the most recently created *complete* recipe (the run names it on the console). A partial
    recipe (`pretrain --max-steps`) is never picked: the error names it and `--init PATH`."""
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
    complete = [f for f in found if not is_partial(f[2].get("recipe") or {})]
    if complete:
        _, path, meta = max(complete, key=lambda f: (f[0], str(f[1])))
        return path, meta
    command = pretrain_command(task, arch=arch)
    if found:
        _, path, meta = max(found, key=lambda f: (f[0], str(f[1])))
        raise AdcbenchError(
            f"init=warmstart: only a partial warm start exists for {task.registry_name} ({path.name}: recipe "
            f"{describe_recipe(meta.get('recipe') or {})}); pass --init {path} to use it anyway, or train the "
            f"full one with `{command}`"
        )
    raise AdcbenchError(
        f"init=warmstart: no warm-start checkpoint for {task.registry_name} "
        f"({arch or task.arch}) yet; produce it with `{command}`"
    )


def warmstart_source(task: Task, init: str, arch: str | None = None) -> Task:
    """The task whose warm start `init` names: `warmstart` is this task's own, `warmstart:SPEC`
    another task's, which must build the same backbone (checked here, before any data loads)."""
    if init == "warmstart":
        return task
    spec = init.removeprefix("warmstart:").strip()
    if not spec:
        raise AdcbenchError("--init warmstart:SPEC needs a task spec, e.g. warmstart:cifar10")
    (name, params), *rest = parse_spec(spec)
    if rest:
        raise AdcbenchError(f"--init {init!r}: the warm-start source is one task spec, not a composition")
    source = get_task(name)(**params)
    want = (arch or task.arch, task.model_kwargs(arch))
    have = (arch or source.arch, source.model_kwargs(arch))
    if want != have:
        raise AdcbenchError(
            f"--init {init!r}: {name}'s warm start is a {have[0]} {have[1]}, but this run needs a "
            f"{want[0]} {want[1]}; choose source and task presets with the same backbone"
        )
    return source
