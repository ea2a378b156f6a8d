"""`float`: the terminal stage that sends a float tensor as is, in float32 (default), float16 or
bfloat16. Every chain that does not end in a terminal stage ends in `float:dtype=float32`;
`adc+float:dtype=float16` halves ADC's payload. Gradients travel in the same dtype."""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Decoded, Fields, Method, expect_tensor, register_method
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@register_method("float")
class FloatWire(Method):
    description = "terminal stage: the tensor as float32/float16/bfloat16 values, both directions"
    params = (Param("dtype", str, "float32", "wire dtype of values and gradients", choices=tuple(_DTYPES)),)
    terminal = True
    eval_compressed = "same cast as training"
    deployment_policy = "raw"
    rate_param = ("dtype", ("float32", "float16"))
    field_categories = {"x": Category.PAYLOAD, "g": Category.PAYLOAD}

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.config["dtype"]]

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, None]:
        return {"x": Field.tensor(x.detach().to(self.dtype), Category.PAYLOAD)}, None

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        return _get(fields, "x", self.dtype).float()

    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Fields:
        return {"g": Field.tensor(grad.detach().to(self.dtype), Category.PAYLOAD)}

    def decode_backward(self, fields: Decoded, ctx: Context) -> torch.Tensor:
        return _get(fields, "g", self.dtype).float()

    def nominal_ratio(self) -> float:
        return torch.empty((), dtype=self.dtype).element_size() / 4

    def _nbytes(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return batch * math.prod(in_shape) * torch.empty((), dtype=self.dtype).element_size()

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        return self._nbytes(batch, in_shape), batch

    def analytic_backward(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return self._nbytes(batch, in_shape)


def _get(fields: Decoded, name: str, dtype: torch.dtype) -> torch.Tensor:
    if len(fields) != 1:
        raise WireFormatError(f"float stage: expected only the field {name!r}, got {sorted(fields)}")
    # finite=False: the value is the stage's output, whose finiteness the pipeline checks once
    return expect_tensor(fields, name, "float stage", dtype=dtype, finite=False)
