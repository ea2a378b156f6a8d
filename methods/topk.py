"""`topk`: per-sample magnitude top-k sparsification of the n×d activation.

Each sample's D = n·d values keep their k = max(1, round(ratio·D)) largest magnitudes. The kept
values are this stage's `rest` (N×k, in the client's graph), so the next stage encodes them:
float32 by default, float16 with `values=float16`, or quantized with `topk:ratio=0.1+quant:bits=8`.

Wire (side information, chosen per message, whichever is smallest; the decoder reads which from
the field's name):
- `gaps`: BYTES, the gap code of each sample's sorted positions (unary Golomb quotients + rANS
  remainders, adcbench/wire/gaps.py); when k > D/2 it codes the D - k dropped positions instead.
  0.07-0.6 % above the information content log2 C(D, k) bits per sample at D = 37,824.
- `mask`: PACKED 1-bit N×D bitmap, ceil(N·D / 8) bytes (optimal near k = D/2);
- `idx`: PACKED N×k indices of ceil(log2 D) bits each, sorted ascending (wins only for tiny k).
Values follow the support in ascending index order in every encoding. The receiver rejects any
out-of-range, unsorted or duplicate position, a wrong count per sample, and non-canonical codes.

Analytic: an upper bound (`exact_size = False`): min(bitmap, indices, the longest valid gap code)
+ the terminal's size for N×k values; the wire's payload + side never exceeds it.
Backward: the server scatters the values into a dense zero tensor, so the gradient with respect
to the values is the gradient on the support: N×k values only, no indices go back (the client
knows its support). Eval (`compressed`): the same top-k per sample.

Deviation from the paper's cost model: the paper charges ceil(log2(B·n·d)) bits per index (23 for
DeiT-T); indices here are within a sample (16 bits for D = 37,824) and a bitmap is used when
cheaper, and gap coding (near log2 C(D, k) bits) is used whenever it is smaller, all counted exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, expect_tensor, register_method
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field, bits_for, gap_decode, gap_encode, packed_nbytes
from adcbench.wire.gaps import gap_code_bound


def fixed_nbytes(batch: int, dim: int, k: int) -> dict[str, int]:
    """Bytes of the two fixed-size support encodings for `batch` samples keeping k of `dim`."""
    return {"mask": packed_nbytes(batch * dim, 1), "idx": packed_nbytes(batch * k, bits_for(dim))}


def support_bound(batch: int, dim: int, k: int) -> int:
    """The most bytes the support of a message can take (the analytic size)."""
    return min(*fixed_nbytes(batch, dim, k).values(), gap_code_bound(batch, min(k, dim - k), dim))


def _sorted_rows(idx: torch.Tensor) -> torch.Tensor:
    """Each row ascending. On the CPU numpy's vectorized int32 sort is ~40x torch's int64 sort
    at top-k shapes (128 × 3,782 of 37,824); elsewhere torch sorts on the device."""
    if idx.device.type != "cpu" or idx.shape[1] >= 2**31:
        return idx.sort(dim=1).values
    return torch.from_numpy(np.sort(idx.numpy().astype(np.int32), axis=1)).long()


def _coded_set(idx: torch.Tensor, dim: int, k: int) -> np.ndarray:
    """The sorted positions the gap code carries: the kept ones, or the dropped ones if fewer."""
    if k <= dim - k:
        return idx.cpu().numpy()
    keep = torch.ones(idx.shape[0], dim, dtype=torch.bool).scatter_(1, idx.cpu(), False)
    return keep.nonzero()[:, 1].reshape(idx.shape[0], dim - k).numpy()


def _from_coded_set(pos: np.ndarray, dim: int, k: int) -> torch.Tensor:
    t = torch.from_numpy(pos)
    if k <= dim - k:
        return t
    keep = torch.ones(t.shape[0], dim, dtype=torch.bool).scatter_(1, t, False)
    return keep.nonzero()[:, 1].reshape(t.shape[0], k)


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
    field_categories = {"gaps": Category.SIDE, "mask": Category.SIDE, "idx": Category.SIDE}
    exact_size = False  # the gap code's length depends on the positions; analytic is its bound
    keeps_finite = True  # decode scatters the (checked) values into zeros: the pipeline skips a recheck

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
        idx = _sorted_rows(self.select(flat, k, ctx))
        gaps = gap_encode(_coded_set(idx, D, k), D)
        sizes = {**fixed_nbytes(N, D, k), "gaps": len(gaps)}
        kind = min(sizes, key=lambda name: (sizes[name], name != "mask"))  # ties: the bitmap
        if kind == "gaps":
            field = Field.raw(gaps, Category.SIDE)
        elif kind == "mask":
            mask = torch.zeros(N, D, dtype=torch.uint8, device=idx.device).scatter_(1, idx, 1)
            field = Field.packed(mask, 1, Category.SIDE)
        else:
            field = Field.packed(idx, bits_for(D), Category.SIDE)
        return {kind: field}, flat.gather(1, idx)

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        shape = self.in_shape
        D = math.prod(shape)
        N, k = rest.shape[0], self.k(D)
        if len(fields) != 1 or next(iter(fields)) not in self.field_categories:
            raise WireFormatError(f"{self.registry_name}: expected one support field (gaps, mask or idx)")
        if "gaps" in fields:
            data = fields["gaps"]
            if not isinstance(data, bytes):
                raise WireFormatError(f"{self.registry_name}: gaps must be a BYTES field")
            idx = _from_coded_set(gap_decode(data, N, min(k, D - k), D), D, k)
        elif "mask" in fields:
            mask = expect_tensor(fields, "mask", self.registry_name, shape=(N, D), high=1)
            if bool((mask.sum(1, dtype=torch.int64) != k).any()):
                raise WireFormatError(f"{self.registry_name}: bitmap must have {k} ones per row")
            idx = mask.nonzero()[:, 1].reshape(N, k)  # ascending within each row
        else:
            idx = expect_tensor(fields, "idx", self.registry_name, shape=(N, k), high=D - 1).long()
            if k > 1 and bool((idx.diff(dim=1) <= 0).any()):
                raise WireFormatError(f"{self.registry_name}: indices must be strictly increasing per sample")
        dense = torch.zeros(N, D, dtype=rest.dtype, device=rest.device).scatter_(1, idx.to(rest.device), rest)
        return dense.reshape(N, *shape)

    # -- analytic size --------------------------------------------------------------------------
    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        D = math.prod(in_shape)
        return support_bound(batch, D, self.k(D)), batch
