"""Image-classification tasks on real data: presets, data resolution, splits.

Data is looked for in this order: the `data=` argument (the CLI's `--data PATH`), the task's
environment variable (e.g. `ADCBENCH_CIFAR10`), the task's well-known local paths (e.g. Debian's
Fashion-MNIST), and finally the Hugging Face hub. See `adcbench.sources` for accepted layouts.

A preset (task parameter `preset=`) fixes resolution, backbone and training defaults together:
`cpu*` presets are small ViTs at low resolution for CPU work, `paper224` is the paper's setup
(ImageNet-pretrained DeiT at 224 px, Adam 1e-4, batch 128, RandAugment + ColorJitter)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

from torch.utils.data import Dataset

from adcbench.core.params import Param
from adcbench.data.images import (
    AUGMENTS,
    GRAY_MEAN,
    GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayImageDataset,
    BatchTransform,
    DataFormatError,
    ImageDataset,
    LazyImageDataset,
)
from adcbench.data.sources import (
    DecodedSplit,
    HFSource,
    LazySplit,
    Source,
    resolve_local,
)
from adcbench.data.task import Task


@dataclasses.dataclass(frozen=True)
class Preset:
    """Resolution, backbone and training defaults that belong together."""

    image_size: int  # what the model sees
    store_size: int  # what is decoded and cached (smaller for upsampled low-res sets)
    arch: str
    arch_kwargs: dict[str, Any]
    in_chans: int = 3
    batch_size: int = 128
    lr: float = 1e-4
    epochs: int = 10
    augment: str = "paper"
    init: str = "pretrained"
    num_workers: int = 0
    hub_config: str | None = None
    warmstart_epochs: int = 10  # recipe for `adcbench pretrain` (CPU warm start)
    warmstart_lr: float = 1e-3


def small_vit(
    image_size: int,
    patch_size: int,
    in_chans: int = 3,
    embed_dim: int = 192,
    depth: int = 6,
    num_heads: int = 3,
    mlp_ratio: float = 2.0,
) -> dict[str, Any]:
    """Keywords for a small timm VisionTransformer that trains on a CPU (split at block 3)."""
    return dict(
        img_size=image_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
    )


def loader_workers(most: int | None = 4, share: int = 1) -> int:
    """DataLoader workers for per-image decoding and augmentation: the CPUs this process may use,
    split `share` ways (one training process per GPU), less one for the process itself, and at
    most `most` (None: no cap). CPU training keeps the cap: there workers compete with the model
    for the same cores. On a GPU the model does not, so the loop lifts the cap (`most=None`)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    workers = cpus // max(1, share) - 1
    return max(0, workers if most is None else min(most, workers))


def deit(name: str) -> Preset:
    """The paper's setup: a pretrained DeiT at 224 px with its augmentation."""
    return Preset(
        image_size=224,
        store_size=224,
        arch=name,
        arch_kwargs={},
        batch_size=128,
        lr=1e-4,
        epochs=10,
        augment="paper",
        init="pretrained",
        num_workers=loader_workers(),
    )


class ImageTask(Task):
    """Base for image-classification tasks; subclasses declare presets and where data lives."""

    presets: ClassVar[dict[str, Preset]] = {}
    default_preset: ClassVar[str] = ""
    class_names: ClassVar[tuple[str, ...] | None] = None  # when the source has none (idx files)
    hub_id: ClassVar[str | None] = None
    hub_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "test"}
    hub_image_col: ClassVar[str | None] = None
    hub_label_col: ClassVar[str | None] = None
    hub_gated: ClassVar[bool] = False
    data_help: ClassVar[str] = "a folder or .tar.gz of train/ and test/ class folders"
    local_defaults: ClassVar[tuple[str, ...]] = ()  # paths tried when no --data/env var is given
    store_channels: ClassVar[int] = 3
    lazy: ClassVar[bool] = False  # decode on fetch (ImageNet-sized) instead of caching arrays
    default_init: ClassVar[str] = "scratch"
    # The reference's communication budget Γ in sample-equivalents (10 epochs of Base), where the
    # paper or its code sets one (informational: a byte budget is what the loop enforces).
    budget_samples: ClassVar[int | None] = None
    augment: str = "none"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "presets" not in cls.__dict__:
            return
        # Class attributes show the default preset, so code reading the class sees real values.
        _apply_preset(cls, cls.presets[cls.default_preset])
        cls.params = (
            Param("preset", str, cls.default_preset, "resolution/backbone preset", choices=tuple(cls.presets)),
            # Not `optional`: the spec parser would read augment=none as "unset".
            Param(
                "augment", str, "preset", "train augmentation; `preset` = the preset's", choices=("preset",) + AUGMENTS
            ),
        ) + tuple(p for p in cls.params if p.name not in ("preset", "augment"))

    def __init__(self, data: str | None = None, **params: Any) -> None:
        super().__init__(data, **params)
        self.preset = self.presets[self.config["preset"]]
        _apply_preset(self, self.preset)
        if self.config["augment"] != "preset":
            self.augment = self.config["augment"]
        self._source: Source | None = None
        self._loaded: dict[str, DecodedSplit | LazySplit] = {}

    def use_preset(self, preset: Preset) -> None:
        """Switch to a preset built at run time (e.g. from a task's `size=`), keeping `augment=`."""
        self.preset = preset
        _apply_preset(self, preset)
        if self.config["augment"] != "preset":
            self.augment = self.config["augment"]

    # -- where the data is -------------------------------------------------------------------
    @classmethod
    def missing_message(cls) -> str:
        env = f" or set {cls.data_env}=PATH" if cls.data_env else ""
        where = f"{cls.hub_id}" + (
            "; gated: accept its terms on huggingface.co and set HF_TOKEN" if cls.hub_gated else ""
        )
        return (
            f"{cls.registry_name}: no local data (pass --data PATH{env}, {cls.data_help}) "
            f"and the Hugging Face hub is unreachable ({where})"
        )

    @classmethod
    def data_lookup(cls) -> dict[str, Any] | None:
        # _find_source's order: --data, the env variable, local_defaults, then the hub.
        return {
            "env": cls.data_env,
            "defaults": list(cls.local_defaults),
            "hub": cls.hub_id,
            "missing": cls.missing_message(),
        }

    def resolve_source(self) -> Source:
        if self._source is None:
            self._source = self._find_source()
        return self._source

    def _find_source(self) -> Source:
        names = list(self.class_names) if self.class_names else None
        if self.data:
            return resolve_local(self.data, self.registry_name, names)
        if self.data_env and os.environ.get(self.data_env):
            return resolve_local(os.environ[self.data_env], self.registry_name, names)
        for path in self.local_defaults:
            if Path(path).exists():
                return resolve_local(path, self.registry_name, names)
        if self.hub_id is None:
            from adcbench.errors import DatasetNotFoundError

            raise DatasetNotFoundError(self.missing_message())
        from adcbench.data.hub import load_hub_split

        config = self.preset.hub_config
        splits = {
            s: load_hub_split(self.hub_id, config, name, self.missing_message(), self.hub_gated)
            for s, name in self.hub_splits.items()
        }
        return HFSource(
            splits, ["hub", self.hub_id, config], f"hub {self.hub_id}", self.hub_image_col, self.hub_label_col
        )

    def _load(self, split: str) -> DecodedSplit | LazySplit:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if split not in self._loaded:
            source = self.resolve_source()
            data = source.load(
                split, tag=self.registry_name, size=self.preset.store_size, channels=self.store_channels, lazy=self.lazy
            )
            self._check_classes(source, split, data.classes)
            self._loaded[split] = data
        return self._loaded[split]

    def _check_classes(self, source: Source, split: str, classes: list[str]) -> None:
        where = f"{self.registry_name} ({source.describe()})"
        if len(classes) != self.num_classes:
            raise DataFormatError(
                f"{where}: {split} has {plural(len(classes), 'class')}, the task has {self.num_classes}"
            )
        other = "test" if split == "train" else "train"
        other_classes = self._loaded[other].classes if other in self._loaded else source.classes(other)
        if list(other_classes) != list(classes):
            a, b = set(classes) - set(other_classes), set(other_classes) - set(classes)
            raise DataFormatError(
                f"{where}: class folders differ between train and test: only in {split}: "
                f"{sorted(a)[:5]}, only in {other}: {sorted(b)[:5]}"
            )

    # -- datasets ----------------------------------------------------------------------------
    def transform(self, train: bool) -> BatchTransform:
        mean, std = (GRAY_MEAN, GRAY_STD) if self.in_chans == 1 else (IMAGENET_MEAN, IMAGENET_STD)
        return BatchTransform(self.image_size, mean, std, train=train, augment=self.augment, out_chans=self.in_chans)

    def load_split(self, split: str, train_transform: bool | None = None) -> Dataset:
        """`train` or `test` as (normalized float C×H×W, label). Training augmentation applies to
        `train` unless `train_transform=False` (e.g. a validation split carved from train)."""
        data = self._load(split)
        transform = self.transform(split == "train" if train_transform is None else train_transform)
        where = f"{self.registry_name} {split}"
        if isinstance(data, LazySplit):
            return LazyImageDataset(
                data.fetch,
                data.names,
                data.labels,
                data.classes,
                self.preset.store_size,
                self.store_channels,
                transform,
                where,
            )
        return ArrayImageDataset(data.images, data.labels, data.classes, transform)

    def eval_view(self, train: Dataset) -> Dataset:
        """The carved validation split gets the evaluation transform, not the augmentation."""
        assert isinstance(train, ImageDataset)
        return train.with_transform(self.transform(train=False))

    def data_info(self) -> dict[str, Any]:
        """Source and per-split counts (incl. skipped corrupt images) for the run record."""
        info: dict[str, Any] = {"source": self.resolve_source().describe(), "splits": {}}
        for split, data in self._loaded.items():
            entry: dict[str, Any] = {"images": int(len(data.labels))}
            if isinstance(data, DecodedSplit):
                entry["bad"] = data.bad
            info["splits"][split] = entry
        return info

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            preset=self.config["preset"],
            augment=self.augment,
            init=self.default_init,
            budget_samples=self.budget_samples,
            in_chans=self.in_chans,
            arch_kwargs=dict(self.arch_kwargs),
        )
        return out


def plural(n: int, noun: str) -> str:
    """`1 class`, `2 classes`, `1 image`, `3 images`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


def _apply_preset(target: Any, p: Preset) -> None:
    target.image_size = p.image_size
    target.in_chans = p.in_chans
    target.arch = p.arch
    target.arch_kwargs = dict(p.arch_kwargs)
    target.batch_size = p.batch_size
    target.lr = p.lr
    target.epochs = p.epochs
    target.augment = p.augment
    target.default_init = p.init
    target.num_workers = p.num_workers
