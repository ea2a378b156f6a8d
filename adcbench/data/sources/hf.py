"""Hugging Face datasets: hub splits and `save_to_disk` folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from adcbench.data.images import DataFormatError

from .base import (
    SPLIT_DIRS,
    DecodedSplit,
    LazySplit,
    Source,
    _HFPayload,
    _Item,
    _payload,
    cached_decode,
)


def _hf_columns(ds: Any, image_col: str | None, label_col: str | None) -> tuple[str, str]:
    import datasets

    feats = ds.features
    for given, role in ((image_col, "image"), (label_col, "label")):
        if given is not None and given not in feats:
            raise DataFormatError(f"dataset has no {role} column {given!r} (columns: {', '.join(feats)})")
    img = (
        image_col if image_col in feats else next((k for k, v in feats.items() if isinstance(v, datasets.Image)), None)
    )
    lab = (
        label_col
        if label_col in feats
        else next((k for k, v in feats.items() if isinstance(v, datasets.ClassLabel)), None)
    )
    if lab is None:
        lab = "label" if "label" in feats else None
    if img is None or lab is None:
        raise DataFormatError(f"dataset has no image and label columns (columns: {', '.join(feats)})")
    return img, lab


class HFSource(Source):
    """A `datasets.Dataset` per split: from the hub or from `save_to_disk`."""

    def __init__(
        self,
        splits: dict[str, Any],
        identity: Any,
        description: str,
        image_col: str | None = None,
        label_col: str | None = None,
    ) -> None:
        import datasets

        self.splits = splits
        self.identity = identity
        self.description = description
        self.cols = {s: _hf_columns(ds, image_col, label_col) for s, ds in splits.items()}
        # Raw bytes, not PIL: our own decoder counts corrupt images instead of crashing.
        self.raw = {s: ds.cast_column(self.cols[s][0], datasets.Image(decode=False)) for s, ds in splits.items()}

    def describe(self) -> str:
        return self.description

    def classes(self, split: str) -> list[str]:
        import datasets

        feat = self.splits[split].features[self.cols[split][1]]
        if isinstance(feat, datasets.ClassLabel):
            return list(feat.names)
        return [str(v) for v in range(int(max(self.splits[split][self.cols[split][1]])) + 1)]

    def _payload(self, cell: dict[str, Any]) -> Any:
        return _payload(cell)

    def load(
        self,
        split: str,
        *,
        tag: str,
        size: int,
        channels: int,
        lazy: bool = False,
        class_names: list[str] | None = None,
    ) -> DecodedSplit | LazySplit:
        ds, (img, lab) = self.raw[split], self.cols[split]
        classes = self.classes(split)
        where = f"{tag} {split} ({self.description})"
        raw_labels = np.asarray(ds[lab], dtype=np.int64)
        if lazy:
            return LazySplit(
                _HFPayload(ds, img),
                _Item(None, f"{self.description}[{{}}]".format),
                raw_labels,
                classes,
                self.description,
            )

        def items() -> Iterator[tuple[str, Any, str]]:
            i = 0
            for batch in ds.iter(batch_size=512):
                for cell, y in zip(batch[img], batch[lab]):
                    yield classes[y], self._payload(cell), f"{self.description}[{i}]"
                    i += 1

        fp = getattr(ds, "_fingerprint", None)
        return cached_decode(
            tag, split, [self.identity, split, fp, len(ds)], size, channels, items, where, self.description, classes
        )


def disk_source(path: Path) -> HFSource:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataFormatError(f"{path}: not a readable save_to_disk dataset ({type(exc).__name__})") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = {}
        for canonical, aliases in SPLIT_DIRS.items():
            name = next((a for a in aliases if a in loaded), None)
            if name is None:
                raise DataFormatError(f"{path}: no {'/'.join(aliases)} split (has {', '.join(loaded)})")
            splits[canonical] = loaded[name]
    else:
        raise DataFormatError(f"{path}: a single-split dataset; save a DatasetDict with train and test splits")
    return HFSource(splits, ["disk", str(path.resolve())], f"save_to_disk dataset {path}")
