"""Helpers for the task tests: tiny image datasets written with PIL in every supported layout."""

from __future__ import annotations

import gzip
import io
import socket
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adcbench.data.imagetask import ImageTask, Preset, small_vit

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLASSES = ("ant", "bee", "cat")
# One solid colour per class, so a loaded image tells which class it was written as.
COLOURS = {"ant": (255, 0, 0), "bee": (0, 255, 0), "cat": (0, 0, 255)}


@pytest.fixture(autouse=True)
def isolated(request, tmp_path_factory, monkeypatch):
    """Every test: a fresh cache (the real archives' tests: one per session, conftest.py), the hub
    offline, and any network connection an error."""
    shared = request.node.get_closest_marker("shared_data")
    cache = request.getfixturevalue("real_data_cache") if shared else str(tmp_path_factory.mktemp("cache"))
    monkeypatch.setenv("ADCBENCH_CACHE", cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ADCBENCH_DECODE_WORKERS", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    real_connect = socket.socket.connect

    def connect(sock, address):  # local (AF_UNIX) sockets stay usable: DataLoader workers need them
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            no_network()
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", connect)


class Tiny(ImageTask):
    """A 3-class task at 16 px (unregistered) exercising the same code as the real tasks."""

    registry_name = "tiny"
    num_classes = 3
    data_env = "ADCBENCH_TINY"
    hub_id = "nobody/tiny"
    presets = {
        "cpu16": Preset(
            image_size=16,
            store_size=16,
            arch="vit",
            arch_kwargs=small_vit(16, 4, embed_dim=32, depth=4, num_heads=2),
            batch_size=4,
            lr=1e-3,
            epochs=1,
            augment="flip",
            init="scratch",
            warmstart_epochs=1,
        )
    }
    default_preset = "cpu16"


class TinyLazy(Tiny):
    registry_name = "tinylazy"
    lazy = True


def encode(colour, size: int = 16, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    img = Image.new("RGB", (size, size), colour)
    if mode == "L":
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def layout(
    n_train: int = 3,
    n_test: int = 2,
    classes=CLASSES,
    test_dir: str = "test",
    test_classes=None,
    size: int = 16,
    fmt: str = "PNG",
) -> dict[str, bytes]:
    """{relative path: encoded image} for train/<class>/i and <test_dir>/<class>/i."""
    ext = ".png" if fmt == "PNG" else ".jpg"
    files = {}
    for split, n, names in (("train", n_train, classes), (test_dir, n_test, test_classes or classes)):
        for c in names:
            for i in range(n):
                files[f"{split}/{c}/{i:04d}{ext}"] = encode(COLOURS.get(c, (9, 9, 9)), size, fmt)
    return files


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_tar(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in files.items():
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def colour_of(x) -> tuple[int, int, int]:
    """The solid colour a normalized CHW tensor was made from (undo ImageNet normalization)."""
    from adcbench.data.images import IMAGENET_MEAN, IMAGENET_STD

    mean = np.array(IMAGENET_MEAN)[:, None, None]
    std = np.array(IMAGENET_STD)[:, None, None]
    rgb = (x.numpy() * std + mean) * 255
    return tuple(int(round(v)) for v in rgb.reshape(3, -1).mean(1))
