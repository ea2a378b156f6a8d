"""idx files (MNIST layout), e.g. Debian's Fashion-MNIST package."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from adcbench.data.images import DataFormatError

from .base import IDX_FILES, DecodedSplit, Source


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as a numpy array: big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not a uint8 idx file")
        dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise DataFormatError(f"{path}: unreadable idx file ({type(exc).__name__}: {exc})") from None


def _idx_path(root: Path, stem: str) -> Path | None:
    for cand in (root / stem, root / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


class IdxSource(Source):
    """MNIST-style idx files (`train-images-idx3-ubyte[.gz]`, `t10k-...`); classes from the task."""

    kind = "idx"

    def __init__(self, root: Path, class_names: list[str] | None) -> None:
        self.root, self.class_names = root, class_names

    def describe(self) -> str:
        return f"idx files {self.root}"

    def classes(self, split: str) -> list[str]:
        if self.class_names:
            return list(self.class_names)
        return [str(i) for i in range(int(self._arrays(split)[1].max()) + 1)]

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        img_stem, lab_stem = IDX_FILES[split]
        img_p, lab_p = _idx_path(self.root, img_stem), _idx_path(self.root, lab_stem)
        if img_p is None or lab_p is None:
            raise DataFormatError(f"{self.root}: missing {img_stem}[.gz] or {lab_stem}[.gz]")
        images, labels = read_idx(img_p), read_idx(lab_p).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFormatError(f"{self.root}: idx images {images.shape} do not match labels {labels.shape}")
        return images, labels

    def load(
        self,
        split: str,
        *,
        tag: str,
        size: int,
        channels: int,
        lazy: bool = False,
        class_names: list[str] | None = None,
    ) -> DecodedSplit:
        images, labels = self._arrays(split)
        classes = self.classes(split)
        if labels.max() >= len(classes):
            raise DataFormatError(f"{self.root}: label {labels.max()} but only {len(classes)} classes")
        x = images[..., None]
        if x.shape[1] != size or channels != 1:
            raise DataFormatError(
                f"{self.root}: idx images are {x.shape[1]} px grayscale; task wants {size} px, {channels} channels"
            )
        n_total = len(labels)
        return DecodedSplit(x, labels, classes, {"total": n_total, "skipped": 0, "examples": []}, self.describe())
