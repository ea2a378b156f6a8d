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


class HeldOutFolderSource(FolderSource):
    """One folder of class sub-folders, `root/<class>/*`, with a test split held out per class:
    a fixed seeded fraction of each class (at least one image where the class has two or more),
    so train and test see every class and every run sees the same split."""

    def __init__(self, root: Path, test_fraction: float, seed: int = 0) -> None:
        super().__init__(root, {"train": root, "test": root})
        self.test_fraction, self.seed = test_fraction, seed

    def describe(self) -> str:
        return f"image folder {self.root} ({self.test_fraction:g} of each class held out as test, seed {self.seed})"

    def files(self, split: str) -> list[tuple[str, Path]]:
        out = []
        rng = np.random.default_rng(self.seed)
        for cls in self.classes(split):
            paths = sorted(p for p in (self.root / cls).rglob("*") if p.is_file() and is_image_name(p.name))
            order = rng.permutation(len(paths))
            n_test = min(len(paths) - 1, max(1, round(len(paths) * self.test_fraction))) if len(paths) > 1 else 0
            chosen = order[:n_test] if split == "test" else order[n_test:]
            out += [(cls, paths[i]) for i in sorted(chosen)]
        return out


def flat_class_folder(root: Path) -> bool:
    """Whether `root` holds class sub-folders of images directly (no train/ or test/ level)."""
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subdirs or any(p.name.lower() in ("train", "test", "val", "validation") for p in subdirs):
        return False
    return any(is_image_name(q.name) for d in subdirs[:50] for q in d.iterdir())
