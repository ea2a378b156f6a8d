"""Real data: the archives under ../shared/data and Debian's Fashion-MNIST (skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _taskdata import SHARED_DATA, isolated  # noqa: F401

from adcbench.data.task import get_task

CIFAR = SHARED_DATA / "cifar10-jpg"
NETTE = SHARED_DATA / "imagenette2-224"


@pytest.mark.shared_data
@pytest.mark.skipif(not (CIFAR / "cifar10-jpg-test.tar.gz").is_file(), reason="no ../shared/data/cifar10-jpg")
def test_cifar10_test_archive():
    task = get_task("cifar10")(data=str(CIFAR / "cifar10-jpg-test.tar.gz"))
    test = task.load_split("test")
    assert len(test) == 10_000 and np.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes == list(task.class_names)
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    assert task.data_info()["splits"]["test"]["bad"]["skipped"] == 0


@pytest.mark.shared_data
@pytest.mark.skipif(not (NETTE / "imagenette2-224-val.tar.gz").is_file(), reason="no ../shared/data/imagenette2-224")
def test_imagenette_val_archive():
    task = get_task("imagenette")(data=str(NETTE))
    test = task.load_split("test")
    assert len(test) == 3925
    assert np.bincount(test.labels).tolist() == [387, 395, 357, 386, 409, 394, 389, 419, 399, 390]
    assert test.classes[0] == "n01440764" and test.classes[-1] == "n03888257"
    x, _ = test[0]
    assert x.shape == (3, 112, 112)


DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(
    not (Path(DEBIAN_FASHION) / "t10k-images-idx3-ubyte.gz").is_file(), reason="apt-get install dataset-fashion-mnist"
)
def test_fashion_mnist_found_from_the_debian_package(monkeypatch):
    monkeypatch.delenv("ADCBENCH_FASHION_MNIST", raising=False)
    task = get_task("fashion-mnist")()
    test = task.load_split("test")
    assert len(test) == 10_000 and np.bincount(test.labels).tolist() == [1000] * 10
    assert test[0][0].shape == (1, 28, 28)
    assert task.data_info()["source"] == f"idx files {DEBIAN_FASHION}"
    assert len(task.load_split("train")) == 60_000
