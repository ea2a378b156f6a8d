"""Where a task's images come from, and decoding them once into a cache.

`resolve_local(PATH)` recognises, in this order:
- a `save_to_disk` dataset (a folder with `dataset_dict.json`, or `state.json` for one split);
- idx files (`train-images-idx3-ubyte[.gz]`, `t10k-...`), e.g. Debian's Fashion-MNIST;
- an image folder: `PATH/train/<class>/*` and `PATH/test/<class>/*` (or `val/`, `validation/`);
- the official Food-101 layout: `PATH/images/<class>/*.jpg` split by `PATH/meta/{train,test}.txt`;
- archives in a folder: `*train*.tar.gz` plus `*test*.tar.gz` or `*val*.tar.gz` (`.tgz`, `.tar`);
- one archive file: its sibling for the other split is found by swapping train <-> test/val in
  the name; without a sibling, the one archive must hold both `train/` and `test/` (or `val/`).
Inside an archive, each image's class is its parent folder and its split the folder above that.

`HubSource` reads a Hugging Face hub dataset. Small sets are decoded once to a uint8 array cached
under `$ADCBENCH_CACHE/data`, keyed by the source's identity (paths, sizes, mtimes, or the hub
fingerprint) and the storage size; large ones (`lazy=True`) are decoded when fetched."""

from __future__ import annotations

import os
from pathlib import Path

from adcbench.data.images import DataFormatError
from adcbench.errors import DatasetNotFoundError

from .archive import ArchiveSource
from .base import (
    ARCHIVE_RE,
    IDX_FILES,
    SPLIT_DIRS,
    DecodedSplit,
    EmptySplitError,
    LazySplit,
    Source,
    cached_decode,
    decode_to_cache,
    is_image_name,
)
from .folder import FolderSource, HeldOutFolderSource, ListedFolderSource, flat_class_folder
from .hf import HFSource, disk_source
from .idx import IdxSource, _idx_path, read_idx
from .imagenet import ImageNetFolderSource, ImageNetTarSource, resolve_imagenet

__all__ = [
    "ArchiveSource",
    "DecodedSplit",
    "EmptySplitError",
    "FolderSource",
    "HFSource",
    "HeldOutFolderSource",
    "IdxSource",
    "ImageNetFolderSource",
    "ImageNetTarSource",
    "LazySplit",
    "ListedFolderSource",
    "Source",
    "cached_decode",
    "decode_to_cache",
    "disk_source",
    "flat_class_folder",
    "is_image_name",
    "read_idx",
    "resolve_imagenet",
    "resolve_local",
]


def resolve_local(path: str | os.PathLike[str], tag: str, class_names: list[str] | None = None) -> Source:
    """Recognise a local dataset at `path` (see the module docstring for the accepted layouts)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetNotFoundError(f"{tag}: data path {p} does not exist")
    if p.is_file():
        if ARCHIVE_RE.search(p.name):
            return ArchiveSource.from_file(p)
        raise DataFormatError(f"{tag}: {p} is not a .tar.gz/.tgz/.tar archive")
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return disk_source(p)
    if _idx_path(p, IDX_FILES["train"][0]) is not None:
        return IdxSource(p, class_names)
    if (p / "meta" / "train.txt").is_file() and (p / "meta" / "test.txt").is_file() and (p / "images").is_dir():
        return ListedFolderSource(p)
    train = p / "train"
    test = next((p / a for a in SPLIT_DIRS["test"] if (p / a).is_dir()), None)
    if train.is_dir() and test is not None:
        return FolderSource(p, {"train": train, "test": test})
    archives = sorted(q for q in p.iterdir() if q.is_file() and ARCHIVE_RE.search(q.name))
    train_arcs = [q for q in archives if "train" in q.name.lower()]
    if len(train_arcs) == 1:
        src = ArchiveSource.from_file(train_arcs[0])
        if src.archives["train"] != src.archives["test"]:
            return src
    if len(archives) == 1:
        return ArchiveSource.from_file(archives[0])
    raise DataFormatError(
        f"{tag}: {p} holds no dataset I recognise: expected train/ and test/ (or val/) class folders, "
        "*-train.tar.gz with *-test.tar.gz (or *-val.tar.gz), a save_to_disk dataset, or idx files"
    )
