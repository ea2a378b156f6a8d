"""Each local source format loads through a task: shapes, labels, classes; and its failure modes."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from _taskdata import (  # noqa: F401
    CLASSES,
    COLOURS,
    Tiny,
    TinyLazy,
    colour_of,
    encode,
    isolated,
    layout,
    write_folder,
    write_idx,
    write_tar,
)

from adcbench.data.images import DataFormatError
from adcbench.data.sources import base as sources
from adcbench.errors import AdcbenchError, DatasetNotFoundError


def check_task(task, n_train=3, n_test=2):
    """Sizes, shapes, class names, and that every image carries its own class's label."""
    train, test = task.load_split("train"), task.load_split("test")
    assert (len(train), len(test)) == (n_train * 3, n_test * 3)
    assert train.classes == test.classes == list(CLASSES)
    for ds in (train, test):
        assert np.bincount(ds.labels).tolist() == [len(ds) // 3] * 3
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 16, 16) and x.dtype == torch.float32
            assert max(abs(a - b) for a, b in zip(colour_of(x), COLOURS[CLASSES[y]])) <= 1


def test_image_folder(tmp_path):
    root = write_folder(tmp_path / "ds", layout())
    check_task(Tiny(data=str(root)))


def test_image_folder_val_dir_and_jpeg_grayscale(tmp_path):
    files = layout(test_dir="val", fmt="JPEG", size=40)
    files["train/ant/gray.jpg"] = encode((128, 128, 128), 40, "JPEG", mode="L")  # gray -> RGB
    task = Tiny(data=str(write_folder(tmp_path / "ds", files)))
    train, test = task.load_split("train"), task.load_split("test")
    assert len(train) == 10 and len(test) == 6
    assert train[0][0].shape == (3, 16, 16)  # decoded at 40 px, stored at the preset's 16 px


def test_archive_pair_by_directory_and_by_either_file(tmp_path):
    files = layout()
    train = {k: v for k, v in files.items() if k.startswith("train/")}
    test = {k: v for k, v in files.items() if k.startswith("test/")}
    write_tar(tmp_path / "arc" / "tiny-train.tar.gz", train, prefix="tiny/")
    write_tar(tmp_path / "arc" / "tiny-test.tar.gz", test, prefix="tiny/")
    write_tar(tmp_path / "unrelated.tar.gz", {"x/y.png": b"no"})
    for data in (tmp_path / "arc", tmp_path / "arc" / "tiny-train.tar.gz", tmp_path / "arc" / "tiny-test.tar.gz"):
        check_task(Tiny(data=str(data)))


def test_archive_per_split_without_split_folders(tmp_path):
    files = layout()
    write_tar(tmp_path / "d-train.tgz", {k[len("train/") :]: v for k, v in files.items() if k.startswith("train/")})
    write_tar(tmp_path / "d-val.tgz", {k[len("test/") :]: v for k, v in files.items() if k.startswith("test/")})
    check_task(Tiny(data=str(tmp_path / "d-val.tgz")))


def test_single_archive_holding_both_splits(tmp_path):
    arc = write_tar(tmp_path / "everything.tar.gz", layout(), prefix="root/")
    check_task(Tiny(data=str(arc)))


def test_save_to_disk(tmp_path):
    import datasets

    feats = datasets.Features({"picture": datasets.Image(), "y": datasets.ClassLabel(names=list(CLASSES))})

    def split(n):
        rows = [(encode(COLOURS[c]), k) for k, c in enumerate(CLASSES) for _ in range(n)]
        return datasets.Dataset.from_dict(
            {"picture": [{"bytes": b, "path": None} for b, _ in rows], "y": [k for _, k in rows]}, features=feats
        )

    datasets.DatasetDict({"train": split(3), "test": split(2)}).save_to_disk(str(tmp_path / "hf"))
    check_task(Tiny(data=str(tmp_path / "hf")))
    lazy = TinyLazy(data=str(tmp_path / "hf"))
    check_task(lazy)


def test_lazy_image_folder(tmp_path):
    check_task(TinyLazy(data=str(write_folder(tmp_path / "ds", layout()))))


def test_idx_files_fashion_mnist(tmp_path):
    from adcbench.data.task import get_task

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    task = get_task("fashion-mnist")(data=str(tmp_path))
    train, test = task.load_split("train"), task.load_split("test")
    assert (len(train), len(test)) == (20, 10)
    assert train.classes[9] == "Ankle boot"
    x, y = test[3]
    assert x.shape == (1, 28, 28) and y == 3
    paper = get_task("fashion-mnist")(data=str(tmp_path), preset="paper224")
    assert paper.load_split("test")[0][0].shape == (3, 224, 224)  # gray replicated for DeiT


def test_env_var_points_at_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ADCBENCH_TINY", str(write_folder(tmp_path / "ds", layout())))
    check_task(Tiny())


def test_corrupt_images_under_one_percent_are_skipped_and_reported(tmp_path):
    files = layout(n_train=40, n_test=1)  # 120 train images
    files["train/bee/broken.png"] = b"\x89PNG\r\n\x1a\n this is not an image"
    task = Tiny(data=str(write_folder(tmp_path / "ds", files)))
    with pytest.warns(UserWarning, match="skipped 1 of 121"):
        train = task.load_split("train")
    assert len(train) == 120
    assert task.data_info()["splits"]["train"]["bad"]["skipped"] == 1
    with pytest.warns(UserWarning, match="skipped 1 of 121"):  # still reported from the cache
        Tiny(data=str(tmp_path / "ds")).load_split("train")


def test_corrupt_images_over_one_percent_fail(tmp_path):
    files = layout()
    files["train/ant/bad.jpg"] = b"garbage"
    with pytest.raises(DataFormatError, match=r"1 of 10 images .* corrupt") as exc:
        Tiny(data=str(write_folder(tmp_path / "ds", files))).load_split("train")
    assert "\n" not in str(exc.value)


def test_corrupt_archive_member_fails(tmp_path):
    files = layout()
    files["train/cat/bad.png"] = b"\x00" * 50
    arc = write_tar(tmp_path / "x.tar.gz", files)
    with pytest.raises(DataFormatError, match="corrupt"):
        Tiny(data=str(arc)).load_split("train")


def test_truncated_archive_fails_clearly(tmp_path):
    arc = write_tar(tmp_path / "x.tar.gz", layout())
    arc.write_bytes(arc.read_bytes()[: len(arc.read_bytes()) // 2])
    with pytest.raises(DataFormatError, match="unreadable archive"):
        Tiny(data=str(arc)).load_split("train")


def test_lazy_corrupt_image_is_substituted_with_its_own_label(tmp_path):
    files = layout()
    files["train/ant/0001.png"] = b"broken"
    task = TinyLazy(data=str(write_folder(tmp_path / "ds", files)))
    train = task.load_split("train")
    with pytest.warns(UserWarning, match="corrupt"):
        x, y = train[1]
    assert CLASSES[y] == "ant" and colour_of(x) == pytest.approx(COLOURS["ant"], abs=1)


def test_class_mismatch_between_splits(tmp_path):
    root = write_folder(tmp_path / "ds", layout(test_classes=("ant", "bee", "cow")))
    with pytest.raises(DataFormatError, match=r"differ between train and test.*cat.*cow"):
        Tiny(data=str(root)).load_split("train")
    with pytest.raises(DataFormatError, match="differ"):
        Tiny(data=str(root)).load_split("test")


def test_class_count_must_match_task(tmp_path):
    root = write_folder(tmp_path / "ds", layout(classes=("ant", "bee"), test_classes=("ant", "bee")))
    with pytest.raises(DataFormatError, match="2 classes, the task has 3"):
        Tiny(data=str(root)).load_split("train")


def test_unrecognised_directory(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "readme.txt").write_text("hi")
    with pytest.raises(DataFormatError, match="no dataset I recognise"):
        Tiny(data=str(tmp_path / "ds")).load_split("train")


@pytest.mark.parametrize(
    "name, env, hub",
    [
        ("cifar10", "ADCBENCH_CIFAR10", "uoft-cs/cifar10"),
        ("cifar100", "ADCBENCH_CIFAR100", "uoft-cs/cifar100"),
        ("imagenette", "ADCBENCH_IMAGENETTE", "frgfm/imagenette"),
        ("food101", "ADCBENCH_FOOD101", "ethz/food101"),
        ("imagenet", "ADCBENCH_IMAGENET", "ILSVRC/imagenet-1k"),
    ],
)
def test_missing_data_is_one_line_naming_flag_env_and_hub(name, env, hub, monkeypatch):
    from adcbench.data.task import get_task

    monkeypatch.delenv(env, raising=False)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as exc:
        get_task(name)().load_split("train")
    msg = str(exc.value)
    assert time.perf_counter() - start < 10  # offline: no retry loop
    assert "\n" not in msg and msg.startswith(f"{name}: no local data")
    assert "--data PATH" in msg and f"{env}=PATH" in msg and hub in msg
    assert "network connection" not in msg  # the blocked socket was never touched
    if name == "imagenet":
        assert "HF_TOKEN" in msg and "wnid" in msg


def test_hub_probe_fails_fast_when_online_mode_but_unreachable(monkeypatch):
    from adcbench.data import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=0: False)
    with pytest.raises(DatasetNotFoundError, match="hub is unreachable"):
        Tiny().load_split("train")


def test_missing_path_and_env_path(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        Tiny(data=str(tmp_path / "nope")).load_split("train")
    monkeypatch.setenv("ADCBENCH_TINY", str(tmp_path / "nope"))
    with pytest.raises(AdcbenchError, match="does not exist"):
        Tiny().load_split("train")


def test_decoded_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    arc = write_tar(tmp_path / "x.tar.gz", layout())
    Tiny(data=str(arc)).load_split("train")
    real = sources.decode_to_cache
    calls = []
    monkeypatch.setattr(sources, "decode_to_cache", lambda *a, **k: (calls.append(1), real(*a, **k)))
    Tiny(data=str(arc)).load_split("train")
    assert calls == []  # served from the cache
    os.utime(arc, ns=(time.time_ns(), time.time_ns() + 10**9))
    Tiny(data=str(arc)).load_split("train")
    assert calls == [1]  # the archive changed: decoded again


def test_validation_split_is_seeded_and_uses_the_eval_transform(tmp_path):
    files = layout(n_train=10)
    import io

    from PIL import Image

    for i in range(10):  # asymmetric images, so a flip would show
        img = Image.new("RGB", (16, 16), COLOURS["ant"])
        img.paste((0, 0, 0), (0, 0, 4, 16))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        files[f"train/ant/{i:04d}.png"] = buf.getvalue()
    task = Tiny(data=str(write_folder(tmp_path / "ds", files)))
    a, b = task.splits(0.2, val_seed=1), Tiny(data=str(tmp_path / "ds")).splits(0.2, val_seed=1)
    assert a.eval_name == "val" and len(a.eval) == 6 and len(a.train) == 24
    assert a.eval.indices == b.eval.indices and set(a.eval.indices).isdisjoint(a.train.indices)
    torch.manual_seed(0)
    for i in range(len(a.eval)):  # evaluation never flips
        x1, _ = a.eval[i]
        x2, _ = a.eval[i]
        assert torch.equal(x1, x2)
    k = next(k for k, j in enumerate(a.train.indices) if a.train.dataset.labels[j] == 0)  # an ant
    unaugmented = a.eval.dataset[a.train.indices[k]][0]  # same image, evaluation transform
    assert {torch.equal(a.train[k][0], unaugmented) for _ in range(30)} == {True, False}  # train flips


def test_dataloader_uses_batched_fetch(tmp_path):
    from torch.utils.data import DataLoader

    task = Tiny(data=str(write_folder(tmp_path / "ds", layout(n_train=8))))
    splits = task.splits(0.25)
    seen = []
    ds = splits.train.dataset
    orig = ds.__getitems__
    ds.__getitems__ = lambda idx: (seen.append(len(idx)), orig(idx))[1]
    x, y = next(iter(DataLoader(splits.train, batch_size=4, shuffle=True, drop_last=True)))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
    assert seen == [4]  # one call per batch, not one per image


def test_hub_source_through_load_dataset(monkeypatch):
    """The hub route, with `datasets.load_dataset` answering from data made here."""
    import datasets

    from adcbench.data import hub

    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})

    def split(n):
        rows = [(encode(COLOURS[c]), k) for k, c in enumerate(CLASSES) for _ in range(n)]
        return datasets.Dataset.from_dict(
            {"image": [{"bytes": b, "path": None} for b, _ in rows], "label": [k for _, k in rows]}, features=feats
        )

    calls = []

    def fake_load(hub_id, config, split: str):
        calls.append((hub_id, config, split))
        return {"train": split_train, "test": split_test}[split]

    split_train, split_test = split(3), split(2)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = Tiny()
    check_task(task)
    assert calls == [("nobody/tiny", None, "train"), ("nobody/tiny", None, "test")]
    assert task.data_info()["source"] == "hub nobody/tiny"


def test_paper_augmentation_is_per_image_and_keeps_shapes():
    from adcbench.data.images import IMAGENET_MEAN, IMAGENET_STD, BatchTransform

    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    x[:] = x[0]  # six copies of one image
    train = BatchTransform(64, IMAGENET_MEAN, IMAGENET_STD, train=True, augment="paper")
    out = train(x)
    assert out.shape == (6, 3, 64, 64) and torch.isfinite(out).all()
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 1  # copies augmented differently
    test = BatchTransform(64, IMAGENET_MEAN, IMAGENET_STD, train=False, augment="paper")
    assert test.augment == "none" and torch.equal(test(x)[0], test(x)[5])


@pytest.mark.parametrize("task_cls", [Tiny, TinyLazy])
def test_food101_official_layout(tmp_path, task_cls):
    root = tmp_path / "food-101"
    lists = {"train": [], "test": []}
    for c in CLASSES:
        for i in range(5):
            write_folder(root, {f"images/{c}/{i}.jpg": encode(COLOURS[c], fmt="PNG")})
            lists["train" if i < 3 else "test"].append(f"{c}/{i}")
    (root / "meta").mkdir()
    for split, entries in lists.items():
        (root / "meta" / f"{split}.txt").write_text("\n".join(entries) + "\n")
    check_task(task_cls(data=str(root)))


def test_parallel_decode_matches_serial(tmp_path, monkeypatch):
    arc = write_tar(tmp_path / "x.tar.gz", layout(n_train=300, n_test=1))  # several 256-image chunks
    serial = Tiny(data=str(arc)).load_split("train")
    monkeypatch.setenv("ADCBENCH_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setenv("ADCBENCH_DECODE_WORKERS", "2")
    parallel = Tiny(data=str(arc)).load_split("train")
    assert np.array_equal(serial.labels, parallel.labels)
    assert np.array_equal(np.asarray(serial.images), np.asarray(parallel.images))


@pytest.mark.parametrize("task_cls", [Tiny, TinyLazy])
def test_dataloader_workers(tmp_path, task_cls):
    from torch.utils.data import DataLoader

    task = task_cls(data=str(write_folder(tmp_path / "ds", layout(n_train=4))))
    loader = DataLoader(
        task.load_split("train"),
        batch_size=4,
        shuffle=True,
        drop_last=True,
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    labels = torch.cat([y for _, y in loader])
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4


def test_a_second_decoder_of_one_cold_entry_waits_and_maps_the_first_ones(tmp_path):
    """Two decoders of one split on a cold cache (a sweep's two jobs, two test workers): one
    decodes, the other waits for it and maps its entry instead of decoding the same images again."""
    import threading

    started, calls, results = threading.Event(), [], []

    def items():
        calls.append(threading.current_thread().name)
        started.set()
        time.sleep(0.5)  # the other decoder arrives while this one is still decoding
        for i, cls in enumerate(CLASSES):
            yield cls, encode(COLOURS[cls]), f"img{i}.png"

    def decode():
        results.append(sources.cached_decode("t", "train", ["same"], 16, 3, items, "here", "origin"))

    first = threading.Thread(target=decode, name="first")
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=decode, name="second")
    second.start()
    first.join(), second.join()
    assert calls == ["first"]
    assert [r.labels.tolist() for r in results] == [[0, 1, 2]] * 2


def test_cached_report_keeps_the_full_bad_count(tmp_path):
    files = layout(n_train=234, n_test=1)  # 702 good train images
    for i in range(6):  # 6 bad: 0.85 %, more than the 5 example names kept
        files[f"train/cat/bad{i}.png"] = b"junk"
    arc = write_tar(tmp_path / "x.tar.gz", files)
    for _ in range(2):  # decode, then from the cache
        with pytest.warns(UserWarning, match="skipped 6 of 708"):
            Tiny(data=str(arc)).load_split("train")


def test_lone_train_archive_says_what_is_missing(tmp_path):
    files = {k: v for k, v in layout().items() if k.startswith("train/")}
    arc = write_tar(tmp_path / "only-train.tar.gz", files)
    with pytest.raises(
        DataFormatError, match=r"no images under a test/ or val/ or validation/ folder, and no sibling"
    ) as exc:
        Tiny(data=str(arc)).load_split("train")
    assert "\n" not in str(exc.value)


def test_cached_dataset_pickles_as_a_file_reference(tmp_path):
    import pickle

    task = Tiny(data=str(write_tar(tmp_path / "x.tar.gz", layout(n_train=50))))
    train = task.splits(0.1).eval.dataset  # the evaluation view: deterministic items
    blob = pickle.dumps(train)
    assert len(blob) < train.images.nbytes  # images are not copied into the pickle
    clone = pickle.loads(blob)
    assert all(torch.equal(clone[i][0], train[i][0]) and clone[i][1] == train[i][1] for i in range(0, 150, 7))


def test_lazy_datasets_pickle(tmp_path):
    import pickle

    import datasets

    folder = TinyLazy(data=str(write_folder(tmp_path / "ds", layout()))).load_split("test")
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    rows = {"image": [{"bytes": encode(COLOURS[c]), "path": None} for c in CLASSES], "label": [0, 1, 2]}
    one = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict({"train": one, "test": one}).save_to_disk(str(tmp_path / "hf"))
    hf = TinyLazy(data=str(tmp_path / "hf")).load_split("test")
    for ds in (folder, hf):
        clone, last = pickle.loads(pickle.dumps(ds)), len(ds) - 1
        assert torch.equal(clone[last][0], ds[last][0]) and clone[last][1] == ds[last][1] == 2
