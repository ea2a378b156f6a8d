"""Tar archives of class folders, read in place (`.tar.gz`, `.tgz`, `.tar`)."""

from __future__ import annotations

import gzip
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from zlib import error as zlib_error

from adcbench.core.cache import file_identity
from adcbench.data.images import DataFormatError

from .base import (
    SPLIT_DIRS,
    DecodedSplit,
    EmptySplitError,
    Source,
    cached_decode,
    is_image_name,
)


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
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
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
    def from_file(path: Path) -> ArchiveSource:
        name = path.name
        m = list(re.finditer(r"train|test|validation|val", name, re.IGNORECASE))
        if m:
            hit = m[-1]
            own = "train" if hit.group().lower() == "train" else "test"
            other = "test" if own == "train" else "train"
            for alt in SPLIT_DIRS[other]:
                sib = path.with_name(name[: hit.start()] + alt + name[hit.end() :])
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
            return (
                f"{path}: no images under a {folders}/ folder, and no sibling archive for the "
                "other split (name it like this one with train <-> test/val swapped)"
            )
        return f"{path}: no images in class folders"

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
        path = self.archives[split]
        where = f"{tag} {split} ({path})"
        identity = [self.kind, file_identity(path), self.archives["train"] == self.archives["test"]]
        try:
            return cached_decode(
                tag, split, identity, size, channels, lambda: self.members(split), where, self.describe()
            )
        except EmptySplitError:
            raise DataFormatError(self._no_images(split)) from None
