"""Backbones: any timm VisionTransformer, by timm name or by explicit architecture keywords."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adcbench.errors import AdcbenchError
from adcbench.model.initspec import check_arch


def create_vit(arch: str, num_classes: int, init: str = "scratch", **kwargs: Any) -> nn.Module:
    """Build a timm VisionTransformer.

    `arch` is a timm model name (e.g. `deit_tiny_patch16_224`) or `vit` for a custom
    `VisionTransformer(**kwargs)`. `init` is `scratch` here; `pretrained`, checkpoint paths and warm
    starts are resolved by `adcbench.backbones` where available.
    """
    import timm
    from timm.models.vision_transformer import VisionTransformer

    if init != "scratch":
        raise AdcbenchError(f"init {init!r} is not supported by create_vit; use 'scratch'")
    if arch == "vit":
        model = VisionTransformer(num_classes=num_classes, **kwargs)
    else:
        check_arch(arch, timm.list_models())
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    if not isinstance(model, VisionTransformer):
        raise AdcbenchError(f"{arch!r} is not a timm VisionTransformer; adcbench splits ViTs only")
    return model


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def model_digest(module: nn.Module) -> str:
    """Short content hash of a module's parameters, for provenance."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
