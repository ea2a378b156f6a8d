"""Your own images: `--task imagefolder --data DIR`. Class count and names come from the data.

Accepted layouts (DIR, or `ADCBENCH_IMAGEFOLDER`):
- `DIR/<class>/*` — one folder of class sub-folders; `test_fraction` of each class (default 0.2,
  a fixed seeded choice) is held out as the test split;
- `DIR/train/<class>/*` with `DIR/test/<class>/*` (or `val/`, `validation/`) — the given split;
  `DIR/train/` alone is split like a single folder;
- anything else the built-in tasks read: `*-train.tar.gz` + `*-test.tar.gz` archives of such
  folders, or a `save_to_disk` DatasetDict with train and test splits (its ClassLabel names).

Presets: `small` (default) — a 6-block ViT of width 192 from scratch at `size` px (default 32)
with `patch` px patches (default size/8, i.e. 64 tokens); `paper224` — the paper's pretrained
DeiT-T at 224 px (images decoded and cached at `size`, default 224). `--arch NAME` takes any timm
ViT at the preset's resolution. The batch size is the preset's (32 for `small`), or half the
training images where there are fewer than twice that."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from adcbench.core.params import Param
from adcbench.data.images import DataFormatError
from adcbench.data.imagetask import ImageTask, Preset, deit, plural, small_vit
from adcbench.data.sources import (
    SPLIT_DIRS,
    FolderSource,
    HeldOutFolderSource,
    HFSource,
    Source,
    flat_class_folder,
    resolve_local,
)
from adcbench.data.task import register_task
from adcbench.errors import DatasetNotFoundError, ParamError

SMALL = Preset(
    image_size=32,
    store_size=32,
    arch="vit",
    arch_kwargs=small_vit(32, 4),
    batch_size=32,
    lr=1e-3,
    epochs=10,
    augment="flip",
    init="scratch",
    warmstart_epochs=10,
    warmstart_lr=1e-3,
)


@register_task("imagefolder")
class ImageFolder(ImageTask):
    description = "your own images: a folder of class sub-folders (classes and names from the folders)"
    num_classes = 0  # set from the data when the task is built
    source = "--data DIR: DIR/<class>/*, DIR/{train,test}/<class>/*, tar.gz archives or a save_to_disk dataset"
    data_env = "ADCBENCH_IMAGEFOLDER"
    data_help = "a folder of class sub-folders, or train/ and test/ class folders"
    presets = {"small": SMALL, "paper224": deit("deit_tiny_patch16_224")}
    default_preset = "small"
    params = (
        Param("size", int, None, "image size in px (default: 32 small; paper224 caches at 224)", low=4, optional=True),
        Param("patch", int, None, "patch size of the small ViT (default: size/8)", low=1, optional=True),
        Param(
            "test_fraction",
            float,
            0.2,
            "part of each class held out as test when DIR has no train/test split",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
    )

    def __init__(self, data: str | None = None, **params: Any) -> None:
        super().__init__(data, **params)
        self.use_preset(self._sized_preset())
        source = self.resolve_source()
        classes = source.classes("train")
        if len(classes) < 2:
            raise DataFormatError(
                f"imagefolder ({source.describe()}): found {plural(len(classes), 'class')}; "
                "a classification task needs at least 2 class sub-folders"
            )
        self.num_classes = len(classes)
        n_train = _cheap_count(source)  # small datasets get a batch that fits
        if n_train is not None and n_train < 2 * self.batch_size:
            self.batch_size = max(2, n_train // 2)

    def _sized_preset(self) -> Preset:
        size, patch = self.config["size"], self.config["patch"]
        if self.config["preset"] != "small":
            return dataclasses.replace(self.preset, store_size=size or self.preset.store_size)
        size = size or SMALL.image_size
        patch = patch or max(1, size // 8)
        if size % patch:
            raise ParamError(f"task imagefolder: size={size} is not a multiple of patch={patch}")
        return dataclasses.replace(SMALL, image_size=size, store_size=size, arch_kwargs=small_vit(size, patch))

    @classmethod
    def missing_message(cls) -> str:
        return f"{cls.registry_name}: pass --data DIR ({cls.data_help}) or set {cls.data_env}"

    @classmethod
    def data_lookup(cls) -> dict[str, Any] | None:
        return {"env": cls.data_env, "defaults": [], "hub": None, "missing": cls.missing_message()}

    def _find_source(self) -> Source:
        path = self.data or os.environ.get(self.data_env or "")
        if not path:
            raise DatasetNotFoundError(self.missing_message())
        p = Path(path).expanduser()
        fraction = self.config.get("test_fraction", 0.2)  # `hf` reuses this without the option
        if p.is_dir():
            if flat_class_folder(p):
                return HeldOutFolderSource(p, fraction)
            has_test = any((p / a).is_dir() for a in SPLIT_DIRS["test"])
            if (p / "train").is_dir() and not has_test and flat_class_folder(p / "train"):
                return HeldOutFolderSource(p / "train", fraction)
        return resolve_local(p, self.registry_name)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["classes"] = self.num_classes
        return out


def _cheap_count(source: Source) -> int | None:
    """Training images, where counting them costs no decoding (folders, datasets)."""
    if isinstance(source, FolderSource):
        return len(source.files("train"))
    if isinstance(source, HFSource):
        return len(source.splits["train"])
    return None
