"""scikit-learn's 8×8 handwritten digits: the offline default task (ships with scikit-learn).

1,797 images of 10 classes. There is no official split, so a fixed seeded 80/20 split is used
(independent of the run seed, so every run sees the same test set)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from adcbench.data.task import Task, register_task


@register_task("digits")
class Digits(Task):
    description = "scikit-learn 8x8 digits (offline default), tiny ViT with 2x2 patches"
    num_classes = 10
    image_size = 8
    in_chans = 1
    source = "sklearn.datasets.load_digits (bundled with scikit-learn, offline)"
    arch = "vit"
    # 16 patches + CLS = 17 tokens of width 64; split after block 3 of 6 as in the paper's l=3.
    arch_kwargs = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=6, num_heads=4, mlp_ratio=2.0)
    split_index = 3
    batch_size = 64
    lr = 1e-3  # trained from scratch: the paper's 1e-4 is for fine-tuning
    epochs = 30
    eval_every = 0
    test_fraction = 0.2

    def load_split(self, split: str) -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = (x - 0.5) / 0.5
        y = torch.tensor(bunch.target, dtype=torch.long)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(20240917))
        n_test = int(round(len(y) * self.test_fraction))
        idx = perm[n_test:] if split == "train" else perm[:n_test]
        return TensorDataset(x[idx], y[idx])
