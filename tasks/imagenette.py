"""Imagenette v2: 10 easy ImageNet classes (9,469 train / 3,925 val).

Local data (`--data PATH` or `ADCBENCH_IMAGENETTE`): a folder with `train/` and `val/` class
(wnid) folders, a folder holding `*-train.tar.gz` and `*-val.tar.gz` of such folders (e.g.
`imagenette2-224-{train,val}.tar.gz` with `imagenette2-224/{train,val}/<wnid>/*.JPEG`), either
archive, or a `save_to_disk` DatasetDict. Grayscale images are converted to RGB. The `val` split
is the test split (reported numbers); tuning uses a validation split carved from train.
Hub fallback: `frgfm/imagenette` (160px config for cpu112, 320px for paper224).

Presets: `cpu112` — 112 px, 16×16 patches (7×7 tokens), a 6-block ViT of width 192, from scratch;
`cpu32` — 32 px, 4×4 patches (8×8 tokens): the very backbone of `cifar10`'s `cpu32`, so a warm start
trained on either dataset fine-tunes on the other (`--init warmstart:cifar10`; the real-image study);
`paper224` — the paper's pretrained DeiT-T at 224 px."""

from __future__ import annotations

import dataclasses

from adcbench.data.imagetask import ImageTask, Preset, deit, small_vit
from adcbench.data.task import register_task
from adcbench.tasks.cifar import CPU32


@register_task("imagenette")
class Imagenette(ImageTask):
    description = "Imagenette v2 (10 ImageNet classes); cpu112 small ViT by default, paper224 DeiT-T"
    num_classes = 10
    source = "hub frgfm/imagenette, or local class folders / tar.gz archives (train + val)"
    data_env = "ADCBENCH_IMAGENETTE"
    data_help = "a folder or .tar.gz of train/ and val/ class folders"
    hub_id = "frgfm/imagenette"
    hub_splits = {"train": "train", "test": "validation"}
    hub_image_col, hub_label_col = "image", "label"
    budget_samples = 100_000  # the reference code's Imagenette budget
    presets = {
        "cpu112": Preset(
            image_size=112,
            store_size=112,
            arch="vit",
            arch_kwargs=small_vit(112, 16),
            batch_size=64,
            lr=1e-3,
            epochs=10,
            augment="flip",
            init="scratch",
            hub_config="160px",
            warmstart_epochs=10,
            warmstart_lr=1e-3,
        ),
        # cifar10's cpu32 itself: the cross-dataset warm start needs the same backbone. 20 warm-start
        # epochs: Imagenette has a fifth of CIFAR-10's images (~1,330 steps).
        "cpu32": dataclasses.replace(CPU32, hub_config="160px", warmstart_epochs=20),
        "paper224": dataclasses.replace(deit("deit_tiny_patch16_224"), hub_config="320px"),
    }
    default_preset = "cpu112"
    split_index = 3
