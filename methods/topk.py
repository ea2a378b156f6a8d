"""`topk`: per-sample magnitude top-k sparsification of the n×d activation.

Each sample's D = n·d values keep their k = max(1, round(ratio·D)) largest magnitudes. The kept
values are this stage's `rest` (N×k, in the client's graph), so the next stage encodes them:
float32 by default, float16 with `values=float16`, or quantized with `topk:ratio=0.1+quant:bits=8`.

Wire (side information, chosen per message, whichever is smaller -- the analytic size makes
the same choice from the same formula):
- `mask`: PACKED 1-bit N×D bitmap, ceil(N·D / 8) bytes;
- `idx`: PACKED N×k indices of ceil(log2 D) bits each (within the sample), sorted ascending,
  ceil(N·k·ceil(log2 D) / 8) bytes.
Values follow the support in ascending index order in both encodings.

Analytic: min(bitmap, indices) + the terminal's size for N×k values.
Backward: the server scatters the values into a dense zero tensor, so the gradient with respect
to the values is the gradient on the support: N×k values only, no indices go back (the client
knows its support). Eval (`compressed`): the same top-k per sample.

Deviation from the paper's cost model: the paper charges ceil(log2(B·n·d)) bits per index (23 for
DeiT-T); indices here are within a sample (16 bits for D = 37,824) and a bitmap is used when
cheaper (k/D > 1/16 at D = 37,824), both counted exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, register_method
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field, bits_for, packed_nbytes


def support_nbytes(batch: int, dim: int, k: int) -> tuple[str, int]:
    """The cheaper support encoding for `batch` samples keeping k of `dim` values each."""
    bitmap = packed_nbytes(batch * dim, 1)
    indices = packed_nbytes(batch * k, bits_for(dim))
    return ("mask", bitmap) if bitmap <= indices else ("idx", indices)


@register_method("topk")
class TopK(Method):
    description = "per-sample magnitude top-k of the n×d activation; bitmap or packed indices, whichever is smaller"
    params = (
        Param("ratio", float, 0.1, "fraction k/(n·d) of values kept per sample", low=0.0, high=1.0, low_open=True),
        Param(
            "values",
            str,
            "float32",
            "dtype of the kept values when topk ends the chain",
            choices=("float32", "float16"),
        ),
    )
    eval_compressed = "same top-k per sample as training"
    deployment_policy = "raw"  # the paper code switches compression off in eval()
    rate_param = ("ratio", (0.5, 0.2, 0.05))

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        self.in_shape = tuple(in_shape)

    def k(self, dim: int) -> int:
        return min(dim, max(1, round(self.config["ratio"] * dim)))

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return (self.k(math.prod(in_shape)),)

    def default_terminal(self) -> tuple[str, dict[str, Any]]:
        return "float", ({} if self.config["values"] == "float32" else {"dtype": self.config["values"]})

    def nominal_ratio(self) -> float:
        # The paper's charge (after RandTopK): 1/2 [r (1 + ceil(log2(B n d)) / 32) + r] -- value and
        # a batch-wide index forward, values only backward.
        r = self.config["ratio"]
        assert self.cut is not None, "setup() first"
        index_bits = math.ceil(math.log2(self.cut.batch_size * math.prod(self.in_shape)))
        return 0.5 * (r * (1 + index_bits / 32) + r)

    # -- client ---------------------------------------------------------------------------------
    def select(self, flat: torch.Tensor, k: int, ctx: Context) -> torch.Tensor:
        """Indices (N×k, any order) of the values to keep."""
        return flat.detach().abs().topk(k, dim=1, sorted=False).indices

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        flat = x.reshape(x.shape[0], -1)
        N, D = flat.shape
        k = self.k(D)
        idx = self.select(flat, k, ctx)
        kind, _ = support_nbytes(N, D, k)
        if kind == "mask":
            mask = torch.zeros(N, D, dtype=torch.bool, device=idx.device).scatter_(1, idx, True)
            idx = mask.nonzero()[:, 1].reshape(N, k)  # ascending per row; cheaper than sorting
            field = Field.packed(mask.view(torch.uint8), 1, Category.SIDE)
        else:
            idx = idx.sort(dim=1).values
            field = Field.packed(idx, bits_for(D), Category.SIDE)
        return {kind: field}, flat.gather(1, idx)

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        shape = self.in_shape
        D = math.prod(shape)
        N, k = rest.shape[0], self.k(D)
        kind, _ = support_nbytes(N, D, k)
        support = fields.get(kind)
        if not isinstance(support, torch.Tensor) or len(fields) != 1:
            raise WireFormatError(f"{self.registry_name}: expected exactly the field {kind!r} for {N} samples")
        if kind == "mask":
            if tuple(support.shape) != (N, D) or bool((support > 1).any()) or bool((support.sum(1) != k).any()):
                raise WireFormatError(f"{self.registry_name}: bitmap must be {N}×{D} with {k} ones per row")
            idx = support.bool().nonzero()[:, 1].reshape(N, k)  # ascending within each row
        else:
            idx = support.long()
            if tuple(idx.shape) != (N, k) or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= D)):
                raise WireFormatError(f"{self.registry_name}: indices must be {N}×{k} values in [0, {D})")
            if k > 1 and bool((idx.diff(dim=1) <= 0).any()):
                raise WireFormatError(f"{self.registry_name}: indices must be strictly increasing per sample")
        dense = torch.zeros(N, D, dtype=rest.dtype, device=rest.device).scatter(1, idx, rest)
        return dense.reshape(N, *shape)

    # -- analytic size --------------------------------------------------------------------------
    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        D = math.prod(in_shape)
        return support_nbytes(batch, D, self.k(D))[1], batch
