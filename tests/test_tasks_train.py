"""One split-learning training step end to end through the training loop, per source format."""

from __future__ import annotations

import numpy as np
import pytest
from _taskdata import encode, isolated, write_folder, write_idx, write_tar  # noqa: F401

from adcbench.data.task import get_task
from adcbench.train import RunConfig, run

CIFAR_CLASSES = get_task("cifar10").class_names


def cifar_layout(n=2, size=32, test_dir="test", fmt="PNG"):
    ext = ".png" if fmt == "PNG" else ".jpg"
    return {
        f"{split}/{c}/{i}{ext}": encode((20 * k, 255 - 20 * k, 7 * i), size, fmt)
        for split in ("train", test_dir)
        for k, c in enumerate(CIFAR_CLASSES)
        for i in range(n)
    }


def one_step(task, data, **kw):
    cfg = RunConfig(
        method="none",
        task=task,
        data=str(data),
        max_steps=1,
        batch_size=4,
        out=None,
        progress=False,
        eval_policy="raw",
        **kw,
    )
    record = run(cfg)
    assert record["status"] == "completed" and record["steps"] == 1
    assert record["bytes"]["fwd"] > 0 and record["bytes"]["bwd"] > 0
    # the accuracy counts whole samples of the eval split (a different split or count would not)
    splits = get_task(task)(data=str(data)).splits(val_fraction=kw.get("val_fraction", 0.0))
    n_eval = len(splits.eval)
    assert abs(record["final"]["acc"] * n_eval - round(record["final"]["acc"] * n_eval)) < 1e-9
    assert len(record["history"]) == 1 and record["history"][0]["step"] == 1
    return record


def make_hf(path):
    import datasets

    files = cifar_layout()
    feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list(CIFAR_CLASSES))})
    splits = {}
    for split in ("train", "test"):
        rows = [(v, CIFAR_CLASSES.index(k.split("/")[1])) for k, v in files.items() if k.startswith(split)]
        splits[split] = datasets.Dataset.from_dict(
            {"img": [{"bytes": b, "path": None} for b, _ in rows], "label": [y for _, y in rows]}, features=feats
        )
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("fmt", ["folder", "archives", "single-archive", "save_to_disk"])
def test_cifar10_one_step_per_source(tmp_path, fmt):
    files = cifar_layout()
    if fmt == "folder":
        data = write_folder(tmp_path / "c", files)
    elif fmt == "archives":
        for split in ("train", "test"):
            write_tar(tmp_path / f"c-{split}.tar.gz", {k: v for k, v in files.items() if k.startswith(split)}, "c/")
        data = tmp_path / "c-train.tar.gz"
    elif fmt == "single-archive":
        data = write_tar(tmp_path / "c.tar.gz", files, "c/")
    else:
        data = make_hf(tmp_path / "hf")
    record = one_step("cifar10", data)
    assert record["cut"]["tokens"] == 65  # 8x8 patches of 4 px + CLS at 32 px


def test_imagenette_one_step_with_validation_split(tmp_path):
    data = write_folder(tmp_path / "n", cifar_layout(size=48, test_dir="val", fmt="JPEG"))
    record = one_step("imagenette", data, val_fraction=0.5)
    assert record["eval_split"] == "val" and record["cut"]["tokens"] == 50  # 7x7 + CLS at 112 px


def test_fashion_mnist_one_step_from_idx(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    one_step("fashion-mnist", tmp_path)


def test_warmstart_init_reaches_the_run_record(tmp_path):
    from adcbench.train.pretrain import pretrain

    data = write_folder(tmp_path / "c", cifar_layout())
    path = pretrain("cifar10", data=str(data), epochs=1, batch_size=4, progress=False)
    record = one_step("cifar10", data, init="warmstart")
    assert record["model"]["init"] == "warmstart" and record["model"]["path"] == str(path)
    assert record["model"]["recipe"]["epochs"] == 1


def test_paper224_preset_one_step(tmp_path):
    """The paper's pipeline: RandAugment + ColorJitter at 32 px, upsampling to 224, DeiT-T."""
    data = write_folder(tmp_path / "c", cifar_layout(n=1))
    cfg = RunConfig(
        method="none",
        task="cifar10",
        task_params={"preset": "paper224"},
        data=str(data),
        max_steps=1,
        batch_size=2,
        out=None,
        progress=False,
        eval_policy="raw",
        init="scratch",
    )  # paper224 defaults to pretrained weights, not reachable offline
    record = run(cfg)
    assert record["status"] == "completed" and record["cut"]["tokens"] == 197 and record["cut"]["dim"] == 192
    assert record["model"]["arch"] == "deit_tiny_patch16_224"
