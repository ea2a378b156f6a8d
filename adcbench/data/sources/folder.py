"""Image folders: PATH/{train,test}/<class>/* and the official Food-101 listed layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adcbench.data.images import DataFormatError

from .base import DecodedSplit, LazySplit, Source, _Item, cached_decode, is_image_name


class FolderSource(Source):
    """`root/train/<class>/*.jpg` and `root/test|val/<class>/*.jpg`."""

    kind = "folder"

    def __init__(self, root: Path, dirs: dict[str, Path]) -> None:
        self.root, self.dirs = root, dirs

    def describe(self) -> str:
        return f"image folder {self.root}"

    def classes(self, split: str) -> list[str]:
        d = self.dirs[split]
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))

    def files(self, split: str) -> list[tuple[str, Path]]:
        out = []
        for cls in self.classes(split):
            out += [
                (cls, p) for p in sorted((self.dirs[split] / cls).rglob("*")) if p.is_file() and is_image_name(p.name)
            ]
        return out

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
        where = f"{tag} {split} ({self.dirs[split]})"
        files = self.files(split)
        if not files:
            raise DataFormatError(f"{where}: no images in class sub-folders")
        classes = self.classes(split)
        if lazy:
            index = {c: i for i, c in enumerate(classes)}
            labels = np.array([index[c] for c, _ in files], dtype=np.int64)
            paths = [p for _, p in files]
            return LazySplit(_Item(paths), _Item(paths, str), labels, classes, self.describe())
        identity = [
            self.kind,
            str(self.dirs[split].resolve()),
            [(str(p.relative_to(self.dirs[split])), p.stat().st_size, p.stat().st_mtime_ns) for _, p in files],
        ]
        return cached_decode(
            tag,
            split,
            identity,
            size,
            channels,
            lambda: ((c, str(p), str(p)) for c, p in files),
            where,
            self.describe(),
            classes,
        )


class ListedFolderSource(FolderSource):
    """The official Food-101 layout: `images/<class>/<id>.jpg` with the split in
    `meta/train.txt` and `meta/test.txt` (one `<class>/<id>` per line)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, {"train": root / "images", "test": root / "images"})

    def describe(self) -> str:
        return f"image folder {self.root} (split by meta/train.txt, meta/test.txt)"

    def _listed(self, split: str) -> list[str]:
        lines = (self.root / "meta" / f"{split}.txt").read_text().split()
        return [line.strip() for line in lines if line.strip()]

    def classes(self, split: str) -> list[str]:
        return sorted({entry.split("/")[0] for entry in self._listed(split)})

    def files(self, split: str) -> list[tuple[str, Path]]:
        out = []
        for entry in self._listed(split):
            path = self.root / "images" / f"{entry}.jpg"
            out.append((entry.split("/")[0], path))
        return out
