from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never reach a hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def tiny_vit(depth: int = 4, dim: int = 32, heads: int = 2, classes: int = 10, **kw) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=8, patch_size=2, in_chans=1, embed_dim=dim, depth=depth, num_heads=heads, num_classes=classes, **kw
    )
