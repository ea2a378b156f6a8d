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

import gzip
import json
from zlib import error as zlib_error
import multiprocessing
import os
import re
import struct
import tarfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import numpy as np

from .cache import atomic_dir, cache_dir, config_hash, file_identity
from .errors import DatasetNotFoundError
from .imagedata import BadImages, DataFormatError, check_bad, decode_image

CACHE_FORMAT = 1
SPLIT_DIRS = {"train": ("train",), "test": ("test", "val", "validation")}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
ARCHIVE_RE = re.compile(r"\.(tar\.gz|tgz|tar)$", re.IGNORECASE)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class EmptySplitError(DataFormatError):
    """A split with no image at all (a wrong path or layout rather than corrupt data)."""


@dataclass
class DecodedSplit:
    """One split as uint8 N×H×W×C images (array or memmap) with labels and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    bad: dict[str, Any]
    origin: str


@dataclass
class LazySplit:
    """One split whose images are decoded when fetched: `fetch(i)` gives bytes or a path."""

    fetch: Callable[[int], Any]
    names: Callable[[int], str]
    labels: np.ndarray
    classes: list[str]
    origin: str


def is_image_name(name: str) -> bool:
    base = PurePosixPath(name).name
    return not base.startswith(".") and PurePosixPath(base).suffix.lower() in IMAGE_SUFFIXES


# -- decoding a stream of images into the cache ---------------------------------------------------
def _decode_chunk(args: tuple[list[Any], int, int]) -> list[np.ndarray | None]:
    payloads, size, channels = args
    return [decode_image(p, size, channels) for p in payloads]


def decode_workers() -> int:
    """Processes for the one-off decode (`ADCBENCH_DECODE_WORKERS`, default: CPUs, at most 8)."""
    env = os.environ.get("ADCBENCH_DECODE_WORKERS")
    return max(1, int(env)) if env else max(1, min(8, os.cpu_count() or 1))


def _chunks(items: Iterator[tuple[str, Any, str]], n: int) -> Iterator[list[tuple[str, Any, str]]]:
    chunk: list[tuple[str, Any, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def decode_to_cache(items: Iterator[tuple[str, Any, str]], out: Path, size: int, channels: int,
                    where: str, classes: list[str] | None = None) -> None:
    """Decode (class name, bytes-or-path, display name) items into `out/` (images.u8, labels.npy,
    meta.json). Memory stays bounded: images are appended to the file as they are decoded, and at
    most a few chunks are in flight in the worker pool."""
    names: list[str] = []
    bad = BadImages()
    n = 0
    workers = decode_workers()
    pool = None
    if workers > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers)
    try:
        with open(out / "images.u8", "wb") as f:
            pending: deque[tuple[list[tuple[str, Any, str]], Any]] = deque()

            def drain_one() -> None:
                nonlocal n
                chunk, result = pending.popleft()
                arrays = result.get() if pool is not None else result
                for (cls, _, name), arr in zip(chunk, arrays):
                    bad.total += 1
                    if arr is None:
                        bad.names.append(name)
                        continue
                    f.write(arr.tobytes())
                    names.append(cls)
                    n += 1

            for chunk in _chunks(items, 256):
                args = ([c[1] for c in chunk], size, channels)
                pending.append((chunk, pool.apply_async(_decode_chunk, (args,)) if pool else _decode_chunk(args)))
                while len(pending) > 2 * workers:
                    drain_one()
            while pending:
                drain_one()
    finally:
        if pool is not None:
            pool.terminate()
    if bad.total == 0:
        raise EmptySplitError(f"{where}: no images found")
    bad.check(where)
    found = sorted(set(names))
    if classes is None:
        classes = found
    elif not set(found) <= set(classes):
        raise DataFormatError(f"{where}: unknown classes {sorted(set(found) - set(classes))[:5]}")
    index = {c: i for i, c in enumerate(classes)}
    np.save(out / "labels.npy", np.array([index[c] for c in names], dtype=np.int64))
    meta = {"format": CACHE_FORMAT, "shape": [n, size, size, channels], "classes": classes,
            "bad": bad.report()}
    (out / "meta.json").write_text(json.dumps(meta))


def load_cached(entry: Path, origin: str) -> DecodedSplit:
    meta = json.loads((entry / "meta.json").read_text())
    images = np.memmap(entry / "images.u8", dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    labels = np.load(entry / "labels.npy")
    return DecodedSplit(images, labels, meta["classes"], meta["bad"], origin)


def cached_decode(tag: str, split: str, identity: Any, size: int, channels: int,
                  items: Callable[[], Iterator[tuple[str, Any, str]]], where: str,
                  origin: str, classes: list[str] | None = None) -> DecodedSplit:
    """Decode once per (source identity, split, size, channels); later calls map the cache."""
    key = config_hash({"format": CACHE_FORMAT, "source": identity, "split": split,
                       "size": size, "channels": channels, "classes": classes})
    entry = cache_dir("data") / f"{tag}-{split}-{size}px-{key}"
    if not (entry / "meta.json").exists():
        with atomic_dir(entry) as tmp:
            decode_to_cache(items(), tmp, size, channels, where, classes)
    split_data = load_cached(entry, origin)
    bad = split_data.bad
    if bad["skipped"]:  # reported on every load, not only the one that decoded
        check_bad(bad["skipped"], bad["total"], bad["examples"][0], where)
    return split_data


# -- picklable fetchers for lazy splits (spawned DataLoader workers pickle the dataset) ------------
class _Item:
    """i -> how(items[i]) (or how(i) without items)."""

    def __init__(self, items: list[Any] | None, how: Callable[[Any], Any] | None = None) -> None:
        self.items, self.how = items, how

    def __call__(self, i: int) -> Any:
        x = i if self.items is None else self.items[i]
        return x if self.how is None else self.how(x)


def _payload(cell: dict[str, Any]) -> Any:
    return cell.get("bytes") or cell.get("path") or b""


class _HFPayload:
    """i -> the encoded bytes (or path) of row i of a `datasets.Dataset` image column."""

    def __init__(self, ds: Any, column: str) -> None:
        self.ds, self.column = ds, column

    def __call__(self, i: int) -> Any:
        return _payload(self.ds[i][self.column])


# -- sources ---------------------------------------------------------------------------------------
class Source:
    """A dataset location that can produce the `train` and `test` splits."""

    kind: str = ""

    def describe(self) -> str:
        raise NotImplementedError  # abstract

    def classes(self, split: str) -> list[str]:
        """Class names of a split, cheaply where possible (folder names, dataset features)."""
        raise NotImplementedError  # abstract

    def load(self, split: str, *, tag: str, size: int, channels: int, lazy: bool = False,
             class_names: list[str] | None = None) -> DecodedSplit | LazySplit:
        raise NotImplementedError  # abstract


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
            out += [(cls, p) for p in sorted((self.dirs[split] / cls).rglob("*"))
                    if p.is_file() and is_image_name(p.name)]
        return out

    def load(self, split: str, *, tag: str, size: int, channels: int, lazy: bool = False,
             class_names: list[str] | None = None) -> DecodedSplit | LazySplit:
        where = f"{tag} {split} ({self.dirs[split]})"
        files = self.files(split)
        if not files:
            raise DataFormatError(f"{where}: no images in class sub-folders")
        classes = self.classes(split)
        if lazy:
            index = {c: i for i, c in enumerate(classes)}
            labels = np.array([index[c] for c, _ in files], dtype=np.int64)
            paths = [p for _, p in files]
            return LazySplit(_Item(paths), _Item(paths, str), labels, classes,
                             self.describe())
        identity = [self.kind, str(self.dirs[split].resolve()),
                    [(str(p.relative_to(self.dirs[split])), p.stat().st_size, p.stat().st_mtime_ns)
                     for _, p in files]]
        return cached_decode(tag, split, identity, size, channels,
                             lambda: ((c, str(p), str(p)) for c, p in files), where,
                             self.describe(), classes)


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


def _member_split_class(name: str) -> tuple[str | None, str] | None:
    """(split folder or None, class) of an archive member path, or None if it is not an image."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or not is_image_name(name) or any(p.startswith(("__MACOSX", ".")) for p in parts[:-1]):
        return None
    split = parts[-3].lower() if len(parts) >= 3 else None
    for canonical, aliases in SPLIT_DIRS.items():
        if split in aliases:
            return canonical, parts[-2]
    return None, parts[-2]


def _wanted(member_split: str | None, split: str, shared: bool) -> bool:
    """One archive for both splits: the split folder decides. An archive per split: members
    under that split's folder, or under no split folder at all."""
    if shared:
        return member_split == split
    return member_split in (split, None)


def _archive_error(path: Path, exc: BaseException) -> DataFormatError:
    return DataFormatError(f"{path}: unreadable archive ({type(exc).__name__}: {exc})")


def _tar_members(path: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Stream the regular-file members of a tar, tar.gz or tgz without extracting to disk.

    gzip is opened here rather than by tarfile so that the stream is read to its end marker:
    tarfile alone stops quietly at a truncated archive, which would train on part of the data."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            with tarfile.open(fileobj=f, mode="r|") as tf:
                for member in tf:
                    if member.isfile():
                        yield member, tf
            while f.read(1 << 20):  # gzip raises EOFError here if the stream was cut short
                pass
    except (EOFError, OSError, tarfile.TarError, zlib_error) as exc:
        raise _archive_error(path, exc) from None


class ArchiveSource(Source):
    """Tar(.gz) archives of class folders, read by streaming members (no extraction step)."""

    kind = "archive"

    def __init__(self, archives: dict[str, Path]) -> None:
        self.archives = archives

    def describe(self) -> str:
        paths = sorted({str(p) for p in self.archives.values()})
        return "archive " + " + ".join(paths)

    @staticmethod
    def from_file(path: Path) -> "ArchiveSource":
        name = path.name
        m = list(re.finditer(r"train|test|validation|val", name, re.IGNORECASE))
        if m:
            hit = m[-1]
            own = "train" if hit.group().lower() == "train" else "test"
            other = "test" if own == "train" else "train"
            for alt in SPLIT_DIRS[other]:
                sib = path.with_name(name[: hit.start()] + alt + name[hit.end():])
                if sib.is_file():
                    return ArchiveSource({own: path, other: sib})
        return ArchiveSource({"train": path, "test": path})  # one archive holding both splits

    def members(self, split: str, read: bool = True) -> Iterator[tuple[str, Any, str]]:
        """(class, bytes, display name) of the split's images, in archive order."""
        path = self.archives[split]
        shared = self.archives["train"] == self.archives["test"]
        for member, tf in _tar_members(path):
            sc = _member_split_class(member.name)
            if sc is None or not _wanted(sc[0], split, shared):
                continue
            fobj = tf.extractfile(member) if read else None
            yield sc[1], fobj.read() if fobj else b"", f"{path.name}:{member.name}"

    def classes(self, split: str) -> list[str]:
        found = sorted({cls for cls, _, _ in self.members(split, read=False)})
        if not found:
            raise DataFormatError(self._no_images(split))
        return found

    def _no_images(self, split: str) -> str:
        path = self.archives[split]
        if self.archives["train"] == self.archives["test"]:
            folders = "/ or ".join(SPLIT_DIRS[split])
            return (f"{path}: no images under a {folders}/ folder, and no sibling archive for the "
                    "other split (name it like this one with train <-> test/val swapped)")
        return f"{path}: no images in class folders"

    def load(self, split: str, *, tag: str, size: int, channels: int, lazy: bool = False,
             class_names: list[str] | None = None) -> DecodedSplit:
        path = self.archives[split]
        where = f"{tag} {split} ({path})"
        identity = [self.kind, file_identity(path), self.archives["train"] == self.archives["test"]]
        try:
            return cached_decode(tag, split, identity, size, channels, lambda: self.members(split),
                                 where, self.describe())
        except EmptySplitError:
            raise DataFormatError(self._no_images(split)) from None


def _hf_columns(ds: Any, image_col: str | None, label_col: str | None) -> tuple[str, str]:
    import datasets

    feats = ds.features
    img = image_col if image_col in feats else next(
        (k for k, v in feats.items() if isinstance(v, datasets.Image)), None)
    lab = label_col if label_col in feats else next(
        (k for k, v in feats.items() if isinstance(v, datasets.ClassLabel)), None)
    if lab is None:
        lab = "label" if "label" in feats else None
    if img is None or lab is None:
        raise DataFormatError(f"dataset has no image and label columns (columns: {', '.join(feats)})")
    return img, lab


class HFSource(Source):
    """A `datasets.Dataset` per split: from the hub or from `save_to_disk`."""

    def __init__(self, splits: dict[str, Any], identity: Any, description: str,
                 image_col: str | None = None, label_col: str | None = None) -> None:
        import datasets

        self.splits = splits
        self.identity = identity
        self.description = description
        self.cols = {s: _hf_columns(ds, image_col, label_col) for s, ds in splits.items()}
        # Raw bytes, not PIL: our own decoder counts corrupt images instead of crashing.
        self.raw = {s: ds.cast_column(self.cols[s][0], datasets.Image(decode=False))
                    for s, ds in splits.items()}

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

    def load(self, split: str, *, tag: str, size: int, channels: int, lazy: bool = False,
             class_names: list[str] | None = None) -> DecodedSplit | LazySplit:
        ds, (img, lab) = self.raw[split], self.cols[split]
        classes = self.classes(split)
        where = f"{tag} {split} ({self.description})"
        raw_labels = np.asarray(ds[lab], dtype=np.int64)
        if lazy:
            return LazySplit(_HFPayload(ds, img), _Item(None, f"{self.description}[{{}}]".format),
                             raw_labels, classes, self.description)

        def items() -> Iterator[tuple[str, Any, str]]:
            i = 0
            for batch in ds.iter(batch_size=512):
                for cell, y in zip(batch[img], batch[lab]):
                    yield classes[y], self._payload(cell), f"{self.description}[{i}]"
                    i += 1

        fp = getattr(ds, "_fingerprint", None)
        return cached_decode(tag, split, [self.identity, split, fp, len(ds)], size, channels,
                             items, where, self.description, classes)


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


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as a numpy array: big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not a uint8 idx file")
        dims = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
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

    def load(self, split: str, *, tag: str, size: int, channels: int, lazy: bool = False,
             class_names: list[str] | None = None) -> DecodedSplit:
        images, labels = self._arrays(split)
        classes = self.classes(split)
        if labels.max() >= len(classes):
            raise DataFormatError(f"{self.root}: label {labels.max()} but only {len(classes)} classes")
        x = images[..., None]
        if x.shape[1] != size or channels != 1:
            raise DataFormatError(f"{self.root}: idx images are {x.shape[1]} px grayscale; task wants {size} px, {channels} channels")
        n_total = len(labels)
        return DecodedSplit(x, labels, classes, {"total": n_total, "skipped": 0, "examples": []}, self.describe())


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
