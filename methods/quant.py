"""`quant`: uniform n-bit min-max quantization, a terminal stage (both directions).

Each group of values (the whole tensor, one sample, or one token: `granularity`) is mapped onto
2^bits levels between its own minimum and maximum: code = round((x - lo) / step), with
step = (hi - lo) / (2^bits - 1). Rounding is to nearest (`deterministic`) or stochastic
(floor(q + u), u ~ U[0, 1) drawn from the side's seeded generator, so unbiased in expectation).

Wire: `codes` PACKED (bits per value, shape = the input's) + `scale` float32 (groups × 2: lo and
step), both sent and counted; codes are PAYLOAD, scales SIDE.
Analytic: ceil(N·numel·bits / 8) + 8·groups bytes.

Backward: the server quantizes the gradient the same way with its own scales and `grad_bits`
bits (default: `bits`), as the authors' code re-quantizes the incoming gradient. The client
applies the dequantized gradient to the tensor that was quantized, i.e. a straight-through
estimator for the rounding, which is also what the authors' code does.

Deviation from the authors' code: their quantizer uses one min/max for the whole batch tensor
and does not count the two scalars; `granularity=tensor` is the faithful option (the scalars
are still counted, 8 bytes per message).
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Decoded, Fields, Method, expect_tensor, register_method
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field, packed_nbytes

GRANULARITIES = ("tensor", "sample", "token")


@register_method("quant")
class Quantize(Method):
    description = "uniform n-bit min-max quantization (per tensor/sample/token scales), both directions"
    params = (
        Param("bits", int, 8, "bits per value", low=1, high=16),
        Param("granularity", str, "sample", "one (min, step) pair per tensor, sample or token", choices=GRANULARITIES),
        Param(
            "rounding",
            str,
            "deterministic",
            "round to nearest, or stochastic (seeded, unbiased)",
            choices=("deterministic", "stochastic"),
        ),
        Param("grad_bits", int, None, "bits for the gradient (default: bits)", low=1, high=16, optional=True),
    )
    terminal = True
    eval_compressed = "quantized as in training (same bits, granularity and rounding)"
    deployment_policy = "raw"  # the paper code switches compression off in eval()
    rate_param = ("bits", (8, 4, 2))
    field_categories = {"codes": Category.PAYLOAD, "scale": Category.SIDE}

    @property
    def grad_bits(self) -> int:
        gb = self.config["grad_bits"]
        return self.config["bits"] if gb is None else gb

    # -- grouping ------------------------------------------------------------------------------
    def _groups(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the scale tensor (without the trailing pair) for a tensor of `shape`."""
        g = self.config["granularity"]
        if g == "tensor":
            return ()
        if g == "sample" or len(shape) <= 2:  # per token needs a token axis; else it is per sample
            return tuple(shape[:1])
        return tuple(shape[:-1])

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(math.prod(self._groups(tuple(x.shape))), -1)

    # -- encode/decode (shared by both directions) ---------------------------------------------
    def _encode(self, x: torch.Tensor, bits: int, ctx: Context) -> Fields:
        x = x.detach().float()
        rows = self._rows(x)
        levels = (1 << bits) - 1
        lo, hi = torch.aminmax(rows, dim=1, keepdim=True)
        step = (hi - lo) / levels
        inv = torch.where(step > 0, 1 / step, torch.zeros_like(step))  # constant group -> code 0
        q = (rows - lo).mul_(inv)
        if self.config["rounding"] == "stochastic":
            noise = torch.rand(q.shape, generator=ctx.generator, dtype=q.dtype)  # CPU generator: device-independent
            q = q.add_(noise.to(q.device)).floor_()
        else:
            q = q.round_()
        codes = q.clamp_(0, levels).to(torch.uint8 if bits <= 8 else torch.int32).reshape(x.shape)
        scale = torch.cat([lo, step], dim=1).reshape(*self._groups(tuple(x.shape)), 2)
        return {"codes": Field.packed(codes, bits, Category.PAYLOAD), "scale": Field.tensor(scale, Category.SIDE)}

    def _decode(self, fields: Decoded, bits: int) -> torch.Tensor:
        # integer codes in [0, 2^bits) (no fractional or bool codes), finite float32 scales
        codes = expect_tensor(fields, "codes", "quant", high=(1 << bits) - 1)
        if codes.dim() < 1:
            raise WireFormatError("quant: codes must have a batch dimension")
        groups = self._groups(tuple(codes.shape))
        scale = expect_tensor(fields, "scale", "quant", shape=(*groups, 2), dtype=torch.float32)
        if bool((scale[..., 1] < 0).any()):
            raise WireFormatError("quant: scales must have a non-negative step")
        s = scale.reshape(-1, 2)
        rows = codes.reshape(s.shape[0], -1).float()
        return torch.addcmul(s[:, :1], rows, s[:, 1:]).reshape(codes.shape)

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, None]:
        return self._encode(x, self.config["bits"], ctx), None

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        return self._decode(fields, self.config["bits"])

    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Fields:
        return self._encode(grad, self.grad_bits, ctx)

    def decode_backward(self, fields: Decoded, ctx: Context) -> torch.Tensor:
        return self._decode(fields, self.grad_bits)

    def nominal_ratio(self) -> float:
        # The authors' code charges n/32 each way (scales ignored); with grad_bits, the mean.
        return (self.config["bits"] + self.grad_bits) / 64

    # -- analytic size -------------------------------------------------------------------------
    def _nbytes(self, batch: int, in_shape: tuple[int, ...], bits: int) -> int:
        shape = (batch, *in_shape)
        return packed_nbytes(math.prod(shape), bits) + 8 * math.prod(self._groups(shape))

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        return self._nbytes(batch, in_shape, self.config["bits"]), batch

    def analytic_backward(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return self._nbytes(batch, in_shape, self.grad_bits)
