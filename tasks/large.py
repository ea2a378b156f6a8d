"""ImageNet-scale tasks: ILSVRC-2012 and Food-101. Images are decoded when fetched (not cached as
arrays) from image folders or the hub; tar.gz archives are decoded once to a disk cache.

ImageNet (`--data PATH` or `ADCBENCH_IMAGENET`): a folder holding the official files as downloaded
(`ILSVRC2012_img_train.tar`, `ILSVRC2012_img_val.tar`, `ILSVRC2012_devkit_t12.tar.gz`; read in
place, never extracted), the Kaggle layout (`ILSVRC/Data/CLS-LOC/{train,val}` with
`LOC_val_solution.csv` and `LOC_synset_mapping.txt`), or `train/` and `val/` with one sub-folder per
wnid (n01440764, ...). Class names come from the devkit or the synset mapping
(`adcbench.data.sources.imagenet`). Hub: `ILSVRC/imagenet-1k` is gated — accept its terms on
huggingface.co and set `HF_TOKEN` (or run `huggingface-cli login`).

Food-101 (`--data PATH` or `ADCBENCH_FOOD101`): `train/` and `test/` class folders (the official
archive's `meta/train.txt`/`test.txt` say which image goes where). Hub: `ethz/food101`.

Presets: `paper224` (default; DeiT-S for ImageNet, DeiT-T for Food-101, pretrained, 224 px) and
`cpu112` (a small ViT at 112 px)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from adcbench.data.imagetask import ImageTask, Preset, deit, loader_workers, small_vit
from adcbench.data.sources import Source, resolve_imagenet
from adcbench.data.task import register_task

CPU112 = Preset(
    image_size=112,
    store_size=112,
    arch="vit",
    arch_kwargs=small_vit(112, 16),
    batch_size=128,
    lr=1e-3,
    epochs=10,
    augment="flip",
    init="scratch",
    num_workers=loader_workers(),
)  # decoded per image: workers pay off


@register_task("imagenet")
class ImageNet(ImageTask):
    description = "ILSVRC-2012 ImageNet-1k (1000 classes), DeiT-S at 224 px"
    num_classes = 1000
    source = "official ILSVRC-2012 tarballs + devkit, the Kaggle layout, train/ + val/ wnid folders, or hub ILSVRC/imagenet-1k (gated)"
    data_env = "ADCBENCH_IMAGENET"
    data_help = "a folder with train/ and val/ holding one sub-folder per wnid, or .tar.gz archives of them"
    hub_id = "ILSVRC/imagenet-1k"
    hub_splits = {"train": "train", "test": "validation"}
    hub_image_col, hub_label_col = "image", "label"
    hub_gated = True
    lazy = True
    presets = {"paper224": deit("deit_small_patch16_224"), "cpu112": CPU112}
    default_preset = "paper224"
    split_index = 3
    class_words: dict[str, str] = {}  # noqa: RUF012 (per instance once the data is found)

    def _find_source(self) -> Source:
        """The official ILSVRC-2012 layouts first, then the generic ones (wnid folders, hub)."""
        path = self.data or (os.environ.get(self.data_env) if self.data_env else None)
        found = resolve_imagenet(Path(path).expanduser()) if path else None
        if found is not None:
            source, self.class_words = found
            return source
        return super()._find_source()

    def data_info(self) -> dict[str, Any]:
        info = super().data_info()
        if self.class_words:  # the names, not all 1000 of them: where they came from and a sample
            info["class_names"] = {w: self.class_words.get(w, "") for w in sorted(self.class_words)[:3]}
        return info


@register_task("food101")
class Food101(ImageTask):
    description = "Food-101 (101 classes), the paper's second task: DeiT-T at 224 px"
    num_classes = 101
    source = "hub ethz/food101, or local train/ + test/ class folders"
    data_env = "ADCBENCH_FOOD101"
    hub_id = "ethz/food101"
    budget_samples = 750_000  # the paper's Γ (about 9.9 epochs)
    hub_splits = {"train": "train", "test": "validation"}
    hub_image_col, hub_label_col = "image", "label"
    lazy = True
    presets = {"paper224": deit("deit_tiny_patch16_224"), "cpu112": dataclasses.replace(CPU112)}
    default_preset = "paper224"
    split_index = 3
