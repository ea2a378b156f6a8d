"""CIFAR-10 and CIFAR-100 (32×32 RGB; 50,000 train / 10,000 test).

Local data (`--data PATH` or `ADCBENCH_CIFAR10` / `ADCBENCH_CIFAR100`): a folder with `train/` and
`test/` class folders, a folder holding `*-train.tar.gz` and `*-test.tar.gz` of such folders (e.g.
`cifar10-jpg-{train,test}.tar.gz` with `cifar10-jpg/{train,test}/<class>/NNNN.jpg`), either one of
those archives (its sibling is found by name), or a `save_to_disk` DatasetDict. Without local
data the hub copy is used (`uoft-cs/cifar10`, `uoft-cs/cifar100`).

Presets: `cpu32` — a 6-block ViT (width 192) on 32 px with 4×4 patches (64 tokens), from scratch;
`paper224` — the paper's ImageNet-pretrained DeiT-T, images upsampled to 224 px in the batch
transform (decoded and cached at 32 px)."""

from __future__ import annotations

from adcbench.data.imagetask import ImageTask, Preset, loader_workers, small_vit
from adcbench.data.task import register_task

CPU32 = Preset(
    image_size=32,
    store_size=32,
    arch="vit",
    arch_kwargs=small_vit(32, 4),
    batch_size=128,
    lr=1e-3,
    epochs=10,
    augment="flip",
    init="scratch",
    warmstart_epochs=10,
    warmstart_lr=1e-3,
)
PAPER224 = Preset(
    image_size=224,
    store_size=32,
    arch="deit_tiny_patch16_224",
    arch_kwargs={},
    batch_size=128,
    lr=1e-4,
    epochs=10,
    augment="paper",
    init="pretrained",
    num_workers=loader_workers(),
)


@register_task("cifar10")
class Cifar10(ImageTask):
    description = "CIFAR-10 (10 classes, 32 px); cpu32 small ViT by default, paper224 DeiT-T"
    num_classes = 10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    source = "hub uoft-cs/cifar10, or local class folders / tar.gz archives"
    data_env = "ADCBENCH_CIFAR10"
    hub_id = "uoft-cs/cifar10"
    hub_image_col, hub_label_col = "img", "label"
    presets = {"cpu32": CPU32, "paper224": PAPER224}
    default_preset = "cpu32"
    split_index = 3


@register_task("cifar100")
class Cifar100(ImageTask):
    description = "CIFAR-100 (100 classes, 32 px), the paper's main task: DeiT-T at 224 px"
    num_classes = 100
    source = "hub uoft-cs/cifar100 (fine labels), or local class folders / tar.gz archives"
    data_env = "ADCBENCH_CIFAR100"
    hub_id = "uoft-cs/cifar100"
    hub_image_col, hub_label_col = "img", "fine_label"
    budget_samples = 500_000  # the paper's Γ: 10 epochs of Base
    presets = {"paper224": PAPER224, "cpu32": CPU32}
    default_preset = "paper224"
    split_index = 3
