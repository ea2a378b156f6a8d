"""Fashion-MNIST: 28×28 grayscale clothing, 10 classes (60,000 train / 10,000 test).

Local data: Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`,
idx files in /usr/share/datasets/fashion-mnist) is found automatically; `--data PATH` or
`ADCBENCH_FASHION_MNIST` may name any folder of idx files (`train-images-idx3-ubyte[.gz]`,
`t10k-...`), class folders, tar.gz archives or a `save_to_disk` DatasetDict.
Hub fallback: `zalando-datasets/fashion_mnist`.

Presets: `cpu28` — one input channel, 4×4 patches (7×7 tokens), a 6-block ViT of width 128;
`paper224` — pretrained DeiT-T at 224 px, gray replicated to RGB."""

from __future__ import annotations

from adcbench.data.imagetask import ImageTask, Preset, loader_workers, small_vit
from adcbench.data.task import register_task


@register_task("fashion-mnist")
class FashionMNIST(ImageTask):
    description = "Fashion-MNIST (10 classes, 28 px gray); cpu28 small ViT by default"
    num_classes = 10
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    source = "Debian dataset-fashion-mnist idx files, or hub zalando-datasets/fashion_mnist"
    data_env = "ADCBENCH_FASHION_MNIST"
    data_help = "idx files, or a folder or .tar.gz of train/ and test/ class folders"
    local_defaults = ("/usr/share/datasets/fashion-mnist",)
    hub_id = "zalando-datasets/fashion_mnist"
    hub_image_col, hub_label_col = "image", "label"
    store_channels = 1
    presets = {
        "cpu28": Preset(
            image_size=28,
            store_size=28,
            in_chans=1,
            arch="vit",
            arch_kwargs=small_vit(28, 4, in_chans=1, embed_dim=128, num_heads=4),
            batch_size=128,
            lr=1e-3,
            epochs=10,
            augment="flip",
            init="scratch",
            warmstart_epochs=5,
            warmstart_lr=1e-3,
        ),
        "paper224": Preset(
            image_size=224,
            store_size=28,
            in_chans=3,
            arch="deit_tiny_patch16_224",
            arch_kwargs={},
            batch_size=128,
            lr=1e-4,
            epochs=10,
            augment="paper",
            init="pretrained",
            num_workers=loader_workers(),
        ),
    }
    default_preset = "cpu28"
    split_index = 3
