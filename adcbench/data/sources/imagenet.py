"""ILSVRC-2012 as people have it: the official tarballs, the Kaggle layout, or wnid folders.

`resolve_imagenet(PATH)` recognises, in a folder:
- the official files: `ILSVRC2012_img_train.tar` (a tar of per-class tars `n01440764.tar`),
  `ILSVRC2012_img_val.tar` (flat `ILSVRC2012_val_00000001.JPEG` ...) and the devkit
  `ILSVRC2012_devkit_t12.tar.gz` (its `data/meta.mat` maps ILSVRC2012_IDs to wnids and names,
  `data/ILSVRC2012_validation_ground_truth.txt` gives each validation image's ID). The tars are
  read in place: their member offsets are indexed once (headers only) and images are read by
  seeking, so 150 GB are never extracted or copied;
- the Kaggle layout: `ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG`, a flat `.../val/*.JPEG` and
  `LOC_val_solution.csv` (`ImageId,PredictionString`, the first token being the wnid), class
  names from `LOC_synset_mapping.txt`;
- `train/<wnid>/` with a flat `val/` labelled by either of those files, or the usual `train/` and
  `val/` wnid folders (class names from a devkit or synset mapping when one lies beside them).
Class order is the sorted wnids: the standard ILSVRC-2012 class indices."""

from __future__ import annotations

import csv
import io
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from adcbench.core.cache import file_identity
from adcbench.data.images import DataFormatError

from .base import LazySplit, Source, _Item, cached_decode, is_image_name
from .folder import FolderSource

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
DEVKIT_GLOB = "ILSVRC2012_devkit_t12*.tar*"
SOLUTION, SYNSETS = "LOC_val_solution.csv", "LOC_synset_mapping.txt"
WNID = re.compile(r"^n\d{8}$")


# -- labels and names -------------------------------------------------------------------------------
def read_devkit(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(validation image stem -> wnid, wnid -> class name) from the devkit archive."""
    from scipy.io import loadmat

    meta = truth = None
    with tarfile.open(path) as tf:
        for m in tf:
            if m.name.endswith("data/meta.mat"):
                meta = loadmat(io.BytesIO(tf.extractfile(m).read()), squeeze_me=True)  # type: ignore[union-attr]
            elif m.name.endswith("data/ILSVRC2012_validation_ground_truth.txt"):
                truth = tf.extractfile(m).read().decode().split()  # type: ignore[union-attr]
    if meta is None or truth is None:
        raise DataFormatError(
            f"{path}: not the ILSVRC-2012 devkit (needs data/meta.mat and the validation ground truth)"
        )
    synsets = np.atleast_1d(meta["synsets"])
    by_id = {int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"])) for s in synsets if int(s["num_children"]) == 0}
    labels = {f"ILSVRC2012_val_{i:08d}": by_id[int(t)][0] for i, t in enumerate(truth, 1)}
    return labels, dict(by_id.values())


def read_solution(path: Path) -> dict[str, str]:
    """Validation image stem -> wnid from Kaggle's `LOC_val_solution.csv`."""
    with open(path, newline="") as f:
        return {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}


def read_synsets(path: Path) -> dict[str, str]:
    """wnid -> class name from `LOC_synset_mapping.txt` (`n01440764 tench, Tinca tinca`)."""
    out = {}
    for line in path.read_text().splitlines():
        wnid, _, words = line.strip().partition(" ")
        if wnid:
            out[wnid] = words
    return out


def _labels_and_names(root: Path) -> tuple[dict[str, str] | None, dict[str, str]]:
    devkit = next(iter(sorted(root.glob(DEVKIT_GLOB))), None)
    if devkit is not None:
        return read_devkit(devkit)
    names = read_synsets(root / SYNSETS) if (root / SYNSETS).is_file() else {}
    return (read_solution(root / SOLUTION) if (root / SOLUTION).is_file() else None), names


# -- the official tarballs, read in place -----------------------------------------------------------
class _TarSlice:
    """i -> the bytes at offsets[i] of an uncompressed tar (picklable for DataLoader workers)."""

    def __init__(self, path: Path, offsets: np.ndarray, sizes: np.ndarray) -> None:
        self.path, self.offsets, self.sizes = path, offsets, sizes

    def __call__(self, i: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(int(self.offsets[i]))
            return f.read(int(self.sizes[i]))


def _index_train(path: Path) -> list[tuple[str, int, int, str]]:
    """(wnid, offset, size, name) of every image in the tar of per-class tars (headers only)."""
    out = []
    with tarfile.open(path) as outer:
        for m in outer.getmembers():
            wnid = Path(m.name).name.split(".")[0]
            if not (m.isfile() and m.name.endswith(".tar") and WNID.match(wnid)):
                continue
            with tarfile.open(fileobj=outer.extractfile(m)) as inner:  # type: ignore[arg-type]
                for im in inner.getmembers():
                    if im.isfile() and is_image_name(im.name):
                        out.append((wnid, m.offset_data + im.offset_data, im.size, f"{m.name}:{im.name}"))
    return out


def _index_val(path: Path, labels: dict[str, str]) -> list[tuple[str, int, int, str]]:
    out = []
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            stem = Path(m.name).stem
            if m.isfile() and is_image_name(m.name):
                if stem not in labels:
                    raise DataFormatError(f"{path}: {m.name} has no ground-truth label")
                out.append((labels[stem], m.offset_data, m.size, m.name))
    return out


class ImageNetTarSource(Source):
    """The official `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar`, labelled by the devkit
    (or `LOC_val_solution.csv`)."""

    kind = "imagenet-tar"

    def __init__(self, root: Path, labels: dict[str, str], names: dict[str, str]) -> None:
        self.root, self.val_labels, self.names = root, labels, names
        self.tars = {"train": root / TRAIN_TAR, "test": root / VAL_TAR}
        self._index: dict[str, list[tuple[str, int, int, str]]] = {}

    def describe(self) -> str:
        return f"ILSVRC-2012 tarballs {self.root}"

    def index(self, split: str) -> list[tuple[str, int, int, str]]:
        if split not in self._index:
            tar = self.tars[split]
            if not tar.is_file():
                raise DataFormatError(f"{self.root}: missing {tar.name}")
            self._index[split] = _index_train(tar) if split == "train" else _index_val(tar, self.val_labels)
        return self._index[split]

    def classes(self, split: str) -> list[str]:
        return sorted({w for w, *_ in self.index("train")})

    def load(self, split: str, *, tag: str, size: int, channels: int, lazy: bool = False, **_: Any) -> Any:
        entries, classes = self.index(split), self.classes(split)
        if not entries:
            raise DataFormatError(f"{self.tars[split]}: no images")
        where = f"{tag} {split} ({self.tars[split]})"
        pos = {c: i for i, c in enumerate(classes)}
        unknown = sorted({w for w, *_ in entries} - set(pos))
        if unknown:
            raise DataFormatError(f"{where}: classes not in train: {unknown[:5]}")
        offsets = np.array([e[1] for e in entries], dtype=np.int64)
        sizes = np.array([e[2] for e in entries], dtype=np.int64)
        fetch = _TarSlice(self.tars[split], offsets, sizes)
        if lazy:
            labels = np.array([pos[e[0]] for e in entries], dtype=np.int64)
            return LazySplit(fetch, _Item([e[3] for e in entries]), labels, classes, self.describe())
        items = ((e[0], fetch(i), e[3]) for i, e in enumerate(entries))
        identity = [self.kind, file_identity(self.tars[split])]
        return cached_decode(tag, split, identity, size, channels, lambda: items, where, self.describe(), classes)


# -- folders: train/<wnid>/ with a flat val/ ------------------------------------------------------
class ImageNetFolderSource(FolderSource):
    """`train/<wnid>/*` and a flat `val/*` whose labels come from the devkit or the Kaggle csv."""

    def __init__(self, root: Path, train: Path, val: Path, labels: dict[str, str], names: dict[str, str]) -> None:
        super().__init__(root, {"train": train, "test": val})
        self.val_labels, self.names = labels, names

    def describe(self) -> str:
        return f"ILSVRC-2012 folders {self.dirs['train']} + flat {self.dirs['test']}"

    def classes(self, split: str) -> list[str]:
        return super().classes("train")

    def files(self, split: str) -> list[tuple[str, Path]]:
        if split == "train":
            return super().files("train")
        out = []
        for p in sorted(self.dirs["test"].iterdir()):
            if p.is_file() and is_image_name(p.name):
                if p.stem not in self.val_labels:
                    raise DataFormatError(f"{p}: no ground-truth label for this validation image")
                out.append((self.val_labels[p.stem], p))
        return out


def _flat(d: Path) -> bool:
    return d.is_dir() and not any(p.is_dir() for p in d.iterdir()) and any(is_image_name(p.name) for p in d.iterdir())


def resolve_imagenet(path: Path) -> tuple[Source, dict[str, str]] | None:
    """An ILSVRC-2012 source at `path` in an official layout (and the wnid -> name map), or None
    for a layout the generic sources read (train/ and val/ wnid folders, archives, datasets)."""
    if not path.is_dir():
        return None
    labels, names = _labels_and_names(path)
    if (path / TRAIN_TAR).is_file() or (path / VAL_TAR).is_file():
        if labels is None:
            raise DataFormatError(
                f"{path}: {VAL_TAR} needs its labels: put the devkit ({DEVKIT_GLOB}) or {SOLUTION} beside it"
            )
        return ImageNetTarSource(path, labels, names), names
    base = path / "ILSVRC" / "Data" / "CLS-LOC"
    for root in (base, path):
        if (root / "train").is_dir() and _flat(root / "val"):
            if labels is None:
                raise DataFormatError(
                    f"{root / 'val'}: a flat validation folder needs its labels: {SOLUTION} or the devkit in {path}"
                )
            return ImageNetFolderSource(path, root / "train", root / "val", labels, names), names
    return None
