"""Image datasets for the tasks: decoding, uint8 storage, and batch-friendly transforms.

Images are decoded once to uint8 H×W×C at a fixed storage size (see `adcbench.sources`, which caches
them on disk) and turned into normalized float tensors a batch at a time: the DataLoader's fetcher
calls `__getitems__` with a whole batch of indices, so a 32-px CIFAR step costs a few tensor ops,
not 128 Python round trips through PIL."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from adcbench.errors import AdcbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.5,)
GRAY_STD = (0.5,)

# Above this fraction of undecodable images a split is refused rather than trained on.
MAX_BAD_FRACTION = 0.01
AUGMENTS = ("none", "flip", "paper")


class DataFormatError(AdcbenchError, ValueError):
    """Local data whose layout or contents cannot be used (wrong folders, corrupt images, ...)."""


def decode_image(data: Any, size: int, channels: int) -> np.ndarray | None:
    """Decode encoded bytes, a path or a PIL image to uint8 size×size×channels; None if corrupt.

    Images are squashed to size×size (no crop), as the paper's `Resize((224, 224))`."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            img = Image.open(io.BytesIO(data))
        elif isinstance(data, (str, Path)):
            img = Image.open(data)
        else:
            img = data
        # JPEG DCT scaling: decoding straight to ~size is several times faster than full decode.
        if getattr(img, "format", None) == "JPEG" and min(img.size) >= 2 * size:
            img.draft(mode, (size, size))
        img = img.convert(mode)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return arr[..., None] if channels == 1 else arr


def check_bad(count: int, total: int, example: str, where: str) -> None:
    """Error above MAX_BAD_FRACTION undecodable images, else a warning with the count."""
    frac = count / max(1, total)
    if frac > MAX_BAD_FRACTION:
        raise DataFormatError(
            f"{where}: {count} of {total} images ({frac:.1%}) are corrupt or unreadable "
            f"(e.g. {example}); more than {MAX_BAD_FRACTION:.0%}, refusing to train on it"
        )
    warnings.warn(f"{where}: skipped {count} of {total} corrupt or unreadable images (e.g. {example})", stacklevel=3)


@dataclass
class BadImages:
    """Undecodable images met while loading one split: counted, reported, bounded."""

    total: int = 0
    names: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.names)

    def check(self, where: str) -> None:
        """Refuse the split if too much of it is garbage; otherwise warn once with a count."""
        if self.names:
            check_bad(self.count, self.total, self.names[0], where)

    def report(self) -> dict[str, Any]:
        return {"total": self.total, "skipped": self.count, "examples": self.names[:5]}


class BatchTransform:
    """uint8 B×C×H×W -> normalized float B×C'×S×S, in the paper's order for training:
    RandAugment(2, 9) and ColorJitter(0.4, 0.4, 0.4) per image (`paper` only), Resize(S, S),
    random horizontal flip (`flip` and `paper`), Normalize. Evaluation: Resize and Normalize."""

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        augment: str = "none",
        out_chans: int | None = None,
    ) -> None:
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.image_size = image_size
        self.train = train
        self.augment = augment if train else "none"
        self.out_chans = out_chans
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._per_image: Callable[[torch.Tensor], torch.Tensor] | None = None
        if self.augment == "paper":
            from torchvision.transforms import v2

            self._per_image = v2.Compose([v2.RandAugment(num_ops=2, magnitude=9), v2.ColorJitter(0.4, 0.4, 0.4, 0.0)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._per_image is not None:
            # RandAugment on a batch tensor would draw one op for the whole batch: go per image.
            x = torch.stack([self._per_image(img) for img in x])
        if self.augment in ("flip", "paper"):
            # Flipping commutes with the (symmetric) resize, so flip the small uint8 batch.
            flip = (torch.rand(x.shape[0]) < 0.5).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        x = x.float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        if self.out_chans is not None and x.shape[1] != self.out_chans:
            x = x.expand(-1, self.out_chans, -1, -1)  # grayscale into an RGB backbone
        mean, std = self.mean, self.std
        if mean.shape[1] != x.shape[1]:
            mean, std = mean.mean(1, keepdim=True), std.mean(1, keepdim=True)
        # (x/255 - mean)/std as one fused multiply-add over the batch.
        return torch.addcmul(-mean / std, x, 1.0 / (255.0 * std))

    def describe(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "augment": self.augment,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }


class ImageDataset(Dataset):
    """Base: subclasses provide uint8 N×H×W×C rows through `_raw`; transforms run per batch."""

    classes: list[str]
    labels: np.ndarray

    def __init__(self, classes: list[str], labels: np.ndarray, transform: BatchTransform) -> None:
        self.classes = list(classes)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def _raw(self, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 N×H×W×C images and their labels for the indices."""
        raise NotImplementedError  # abstract

    def __getitems__(self, idx: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        images, labels = self._raw(list(idx))
        raw = torch.from_numpy(np.ascontiguousarray(images))
        x = self.transform(raw.permute(0, 3, 1, 2).contiguous())  # NCHW: faster batch ops
        return list(zip(x.unbind(0), labels.tolist()))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.__getitems__([i % len(self)])[0]

    def with_transform(self, transform: BatchTransform) -> ImageDataset:
        """The same images under another transform (e.g. a validation split carved from train)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.transform = transform
        return clone


class ArrayImageDataset(ImageDataset):
    """Decoded images held as one uint8 N×H×W×C array (in memory or a read-only memmap)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], transform: BatchTransform) -> None:
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
            raise ValueError(f"expected uint8 N×H×W×C images matching labels, got {images.shape}")
        super().__init__(classes, labels, transform)
        self.images = images

    def _raw(self, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(idx, dtype=np.int64)
        return self.images[rows], self.labels[rows]

    # Spawned DataLoader workers (macOS, Windows) receive the dataset pickled: send the memmap's
    # file name and reopen it there, instead of copying every image into each worker.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        img = self.images
        if isinstance(img, np.memmap) and img.filename and img.offset == 0 and img.flags.c_contiguous:
            state["images"] = ("memmap", str(img.filename), tuple(img.shape))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("images"), tuple):
            _, filename, shape = state["images"]
            state["images"] = np.memmap(filename, dtype=np.uint8, mode="r", shape=shape)
        self.__dict__.update(state)


class LazyImageDataset(ImageDataset):
    """Images decoded when fetched, for sets too large to decode up front (ImageNet, Food-101).

    An undecodable image is replaced by the next decodable one and counted; more than
    MAX_BAD_FRACTION bad images among those fetched (after 200) stops the run with an error."""

    def __init__(
        self,
        fetch: Callable[[int], Any],
        names: Callable[[int], str],
        labels: np.ndarray,
        classes: list[str],
        size: int,
        channels: int,
        transform: BatchTransform,
        where: str,
    ) -> None:
        super().__init__(classes, labels, transform)
        self.fetch, self.names = fetch, names
        self.size, self.channels, self.where = size, channels, where
        self.bad = BadImages()

    def _decode(self, i: int) -> tuple[np.ndarray, int]:
        if not hasattr(self, "_seen"):  # counted per image, not per fetch: epochs must not recount
            self._seen, self._known_bad = np.zeros(len(self), bool), np.zeros(len(self), bool)
        for k in range(len(self)):
            j = (i + k) % len(self)
            if self._known_bad[j]:
                continue
            if not self._seen[j]:
                self._seen[j] = True
                self.bad.total += 1
            arr = decode_image(self.fetch(j), self.size, self.channels)
            if arr is not None:
                return arr, int(self.labels[j])  # the substitute's own label
            self._known_bad[j] = True
            self.bad.names.append(self.names(j))
            warnings.warn(f"{self.where}: corrupt or unreadable image {self.names(j)}; skipped", stacklevel=2)
            if self.bad.total >= 200:
                self.bad.check(self.where)
        raise DataFormatError(f"{self.where}: no image in this split can be decoded")

    def _raw(self, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self._decode(i) for i in idx]
        return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)
