"""Tasks: a dataset, its splits and transforms, a default backbone and training defaults.

A task is a class registered with `@register_task("name")` in a module of `tasks/` (or a plugin
through the `adcbench.tasks` entry-point group). The training loop uses only this interface."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, Subset

from adcbench.core.params import Param, resolve_params
from adcbench.core.registry import Registry

TASKS: Registry[type[Task]] = Registry("task", "adcbench.tasks", "adcbench.tasks")
register_task = TASKS.register


@dataclasses.dataclass
class Splits:
    train: Dataset
    eval: Dataset  # what the history is evaluated on (test, or the carved validation split)
    test: Dataset
    eval_name: str  # "test" or "val"


class Task:
    """Base class. Subclasses set the class attributes and implement `load_split`."""

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    num_classes: ClassVar[int]
    image_size: ClassVar[int]
    in_chans: ClassVar[int] = 3
    source: ClassVar[str] = ""  # where the data comes from (hub id, package, ...)
    data_env: ClassVar[str | None] = None  # environment variable that points at local data
    # Backbone: timm name or "vit" with explicit keywords.
    arch: ClassVar[str] = "vit"
    arch_kwargs: ClassVar[dict[str, Any]] = {}
    split_index: ClassVar[int] = 3
    # Training defaults (the paper: Adam 1e-4, batch 128).
    batch_size: ClassVar[int] = 128
    lr: ClassVar[float] = 1e-4
    epochs: ClassVar[int] = 10
    eval_every: ClassVar[int] = 0  # steps between evaluations; 0 = once per epoch
    default_method: ClassVar[str] = "adc"
    num_workers: ClassVar[int] = 0  # DataLoader workers for the train/eval loaders
    default_init: ClassVar[str] = "scratch"  # what `--init` means when not given
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, data: str | None = None, **params: Any) -> None:
        self.data = data
        self.config = resolve_params(self.params, params, f"task {self.registry_name}")

    # -- data -----------------------------------------------------------------------------
    @classmethod
    def data_lookup(cls) -> dict[str, Any] | None:
        """Where the task looks for its data when no `--data` is given, in a form the CLI can
        check before importing torch (cli/catalog.py): {"env": variable, "defaults": paths tried,
        "hub": hub id or None, "missing": the error when none has it}. None: the data needs no
        lookup (built in) or depends on the task's parameters; the task decides at load time."""
        return None

    def load_split(self, split: str) -> Dataset:
        """Return the `train` or `test` split as a Dataset of (float image C×H×W, int label)."""
        raise NotImplementedError  # abstract: every registered task implements it

    def splits(self, val_fraction: float = 0.0, val_seed: int = 0) -> Splits:
        """Train/eval/test. With val_fraction > 0 a validation split is carved from train by a
        fixed seeded permutation (independent of the run seed), and history is evaluated on it."""
        train, test = self.load_split("train"), self.load_split("test")
        if val_fraction <= 0:
            return Splits(train, test, test, "test")
        n = len(train)
        n_val = max(1, int(round(n * val_fraction)))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(val_seed)).tolist()
        return Splits(Subset(train, perm[n_val:]), Subset(self.eval_view(train), perm[:n_val]), test, "val")

    def eval_view(self, train: Dataset) -> Dataset:
        """The training set as the validation split sees it (image tasks drop augmentation)."""
        return train

    # -- model ----------------------------------------------------------------------------
    # Building the backbone is `adcbench.model.backbones.build_backbone(task, init, arch)`: the
    # data layer describes the model (arch, keywords) but never imports the model layer.
    def data_info(self) -> dict[str, Any]:
        """Where the data came from (and, for image tasks, per-split counts) for the record."""
        return {"source": self.source}

    def model_kwargs(self, arch: str | None = None) -> dict[str, Any]:
        if arch is None or arch == self.arch:
            return dict(self.arch_kwargs)
        return {"img_size": self.image_size, "in_chans": self.in_chans}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.registry_name,
            "classes": self.num_classes,
            "image_size": self.image_size,
            "source": self.source,
            "data_env": self.data_env,
            "arch": self.arch,
            "split": self.split_index,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "epochs": self.epochs,
        }


def get_task(name: str) -> type[Task]:
    return TASKS.get(name)
