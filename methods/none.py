"""`none`: no compression. The activations cross as float32 (via the float terminal stage) and
the labels as the smallest integer type that holds the class count."""

from __future__ import annotations

import torch

from adcbench.core.method import Context, Decoded, Fields, Method, register_method


@register_method("none")
class NoCompression(Method):
    description = "identity: float32 activations and gradients, integer labels (the paper's Base)"
    eval_compressed = "identity (same as raw)"
    deployment_policy = "raw"  # identical to compressed: none is the raw pipeline
    field_categories = {}  # no fields of its own

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        return {}, x

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        return rest

    def nominal_ratio(self) -> float:
        return 1.0

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        return 0, batch
