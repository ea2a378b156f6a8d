from __future__ import annotations

import os

# One intra-op thread per test process, and for the CLI subprocesses the tests start (they inherit
# the environment): the models are tiny, and a thread pool per process on a busy 2-core machine
# made the suite 3-7x slower (issue 16). Set before torch is imported, so torch reads it too;
# parallelism comes from processes instead (`pytest -n 2`, pytest-xdist). An explicit setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
