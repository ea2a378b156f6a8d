"""ILSVRC-2012 as distributed: a miniature (3 classes, a few images) in each official layout."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from _taskdata import encode, isolated, write_folder  # noqa: F401

from adcbench.data.images import DataFormatError
from adcbench.data.imagetask import Preset, small_vit
from adcbench.data.sources import ImageNetFolderSource, ImageNetTarSource, resolve_imagenet
from adcbench.tasks.large import ImageNet

WNIDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish", "n01484850": "great white shark"}
COLOUR = dict(zip(WNIDS, [(250, 0, 0), (0, 250, 0), (0, 0, 250)]))
# Validation images in file order: their classes (the ground truth), deliberately interleaved.
VAL = ["n01484850", "n01440764", "n01443537", "n01440764", "n01484850", "n01443537"]
PER_CLASS = 3


class MiniImageNet(ImageNet):
    """The real ImageNet task's code, with 3 classes at 16 px (unregistered)."""

    registry_name = "mini-imagenet"
    num_classes = 3
    presets = {
        "cpu16": Preset(
            16, 16, "vit", small_vit(16, 4, embed_dim=32, depth=4, num_heads=2), batch_size=4, init="scratch"
        )
    }
    default_preset = "cpu16"


def jpeg(wnid: str) -> bytes:
    return encode(COLOUR[wnid], 20, "JPEG")


def tar_bytes(files: dict[str, bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}"


def devkit(root: Path) -> None:
    from scipy.io import savemat

    # meta.mat as the devkit has it: leaf synsets with IDs 1..1000, then inner nodes (children > 0).
    rows = [(i, w, words, 0) for i, (w, words) in enumerate(WNIDS.items(), 1)] + [(4, "n00001740", "entity", 3)]
    synsets = np.array(rows, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    mat = io.BytesIO()
    savemat(mat, {"synsets": synsets})
    ids = list(WNIDS)
    truth = "\n".join(str(ids.index(w) + 1) for w in VAL).encode()
    files = {"ILSVRC2012_devkit_t12/data/meta.mat": mat.getvalue()}
    files["ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"] = truth
    (root / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(tar_bytes(files, gz=True))


def official(root: Path) -> Path:
    root.mkdir(parents=True)
    inner = {f"{w}.tar": tar_bytes({f"{w}_{i}.JPEG": jpeg(w) for i in range(PER_CLASS)}) for w in WNIDS}
    (root / "ILSVRC2012_img_train.tar").write_bytes(tar_bytes(inner))
    (root / "ILSVRC2012_img_val.tar").write_bytes(
        tar_bytes({f"{val_name(i)}.JPEG": jpeg(w) for i, w in enumerate(VAL, 1)})
    )
    devkit(root)
    return root


def kaggle(root: Path) -> Path:
    base = "ILSVRC/Data/CLS-LOC"
    files = {f"{base}/train/{w}/{w}_{i}.JPEG": jpeg(w) for w in WNIDS for i in range(PER_CLASS)}
    files.update({f"{base}/val/{val_name(i)}.JPEG": jpeg(w) for i, w in enumerate(VAL, 1)})
    write_folder(root, files)
    rows = "".join(f"{val_name(i)},{w} 1 2 30 40 {w} 5 6 7 8\n" for i, w in enumerate(VAL, 1))
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {words}\n" for w, words in WNIDS.items()))
    return root


def folders_with_flat_val(root: Path) -> Path:
    files = {f"train/{w}/{w}_{i}.JPEG": jpeg(w) for w in WNIDS for i in range(PER_CLASS)}
    files.update({f"val/{val_name(i)}.JPEG": jpeg(w) for i, w in enumerate(VAL, 1)})
    write_folder(root, files)
    devkit(root)
    return root


def check_loads(data: Path, kind: type) -> MiniImageNet:
    task = MiniImageNet(data=str(data))
    assert isinstance(task.resolve_source(), kind)
    assert task.class_words == WNIDS
    for split, n in (("train", 3 * PER_CLASS), ("test", len(VAL))):
        ds = task.load_split(split, train_transform=False)
        assert len(ds) == n
        for i in range(n):
            x, y = ds[i]
            # The image's colour says which class it was written as: the label must agree.
            assert int(x.mean(dim=(1, 2)).argmax()) == y
    test_labels = [int(task.load_split("test")[i][1]) for i in range(len(VAL))]
    assert test_labels == [sorted(WNIDS).index(w) for w in VAL]
    return task


@pytest.mark.parametrize(
    "layout,kind",
    [(official, ImageNetTarSource), (kaggle, ImageNetFolderSource), (folders_with_flat_val, ImageNetFolderSource)],
)
def test_imagenet_miniature_loads_in_each_official_layout(tmp_path, layout, kind):
    task = check_loads(layout(tmp_path / "imagenet"), kind)
    assert task.data_info()["class_names"]["n01440764"] == "tench, Tinca tinca"


def test_imagenet_wnid_folders_still_load(tmp_path):
    files = {f"{s}/{w}/{w}_{i}.JPEG": jpeg(w) for s in ("train", "val") for w in WNIDS for i in range(2)}
    data = write_folder(tmp_path / "inet", files)
    assert resolve_imagenet(data) is None  # the generic folder source reads it
    assert len(MiniImageNet(data=str(data)).load_split("test")) == 6


def test_flat_val_without_labels_is_a_clear_error(tmp_path):
    data = folders_with_flat_val(tmp_path / "inet")
    (data / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    with pytest.raises(DataFormatError, match="needs its labels"):
        MiniImageNet(data=str(data)).resolve_source()
