"""The source contract, decoded/lazy splits, and decoding images once into the cache."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from filelock import FileLock

from adcbench.core.cache import atomic_dir, cache_dir, config_hash
from adcbench.data.images import BadImages, DataFormatError, check_bad, decode_image

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


def decode_to_cache(
    items: Iterator[tuple[str, Any, str]],
    out: Path,
    size: int,
    channels: int,
    where: str,
    classes: list[str] | None = None,
) -> None:
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
    meta = {"format": CACHE_FORMAT, "shape": [n, size, size, channels], "classes": classes, "bad": bad.report()}
    (out / "meta.json").write_text(json.dumps(meta))


def load_cached(entry: Path, origin: str) -> DecodedSplit:
    meta = json.loads((entry / "meta.json").read_text())
    images = np.memmap(entry / "images.u8", dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    labels = np.load(entry / "labels.npy")
    return DecodedSplit(images, labels, meta["classes"], meta["bad"], origin)


def cached_decode(
    tag: str,
    split: str,
    identity: Any,
    size: int,
    channels: int,
    items: Callable[[], Iterator[tuple[str, Any, str]]],
    where: str,
    origin: str,
    classes: list[str] | None = None,
) -> DecodedSplit:
    """Decode once per (source identity, split, size, channels); later calls map the cache."""
    key = config_hash(
        {
            "format": CACHE_FORMAT,
            "source": identity,
            "split": split,
            "size": size,
            "channels": channels,
            "classes": classes,
        }
    )
    entry = cache_dir("data") / f"{tag}-{split}-{size}px-{key}"
    if not (entry / "meta.json").exists():
        # One decoder per entry: another process on the same cold cache (a sweep's other job, a
        # second test worker) waits for this decode instead of repeating it on the same cores.
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(entry.with_name(f".{entry.name}.lock")):
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
        raise NotImplementedError  # abstract
