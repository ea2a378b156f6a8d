"""`splitfc`: adaptive feature-wise dropout + adaptive feature-wise quantization (Oh, Lee, Brinton,
Jeon, "Communication-Efficient Split Learning via Adaptive Feature-Wise Compression", arXiv
2307.10805, IEEE TNNLS 2025).

Verified from the paper's abstract (its body, with the closed forms, was not available offline):
features are the *columns* of the intermediate matrix; columns are dropped with probabilities set
by their standard deviation; the gradient columns of dropped features are dropped too (chain rule);
the kept feature and gradient columns are quantized with per-column levels set by their ranges,
by a closed-form optimum. Every other choice below is an option with a documented default.

Columns (`feature`): `element` (default) -- the N×(n·d) matrix, one column per activation value
across the batch, as the paper's flattened feature vectors; `channel` -- the (N·n)×d matrix.
Dropout (`selection`): K = max(1, round(keep·D)) of the D columns are kept. `sample` draws them
without replacement with weights proportional to each column's standard deviation (the side's
seeded generator); `topk` keeps the K largest. Dropped columns are zero on the server (no
rescaling). The count is fixed so the message size is exact.
Quantization: kept column j is min-max quantized with b_j bits (2^b_j levels over [lo_j, hi_j]).
The widths solve min sum_j R_j^2 4^(-b_j) s.t. sum_j b_j = round(bits·K): the high-resolution
closed form b_j = t + log2 R_j (levels proportional to the range: one step size for every
column), clamped to [0, 16] with t found by bisection, then rounded by largest remainder so the
budget is met exactly. A zero-bit column is sent as its midpoint (lo + hi) / 2.

Wire (forward): the kept set as `mask` (PACKED D×1 bit) or `gaps` (BYTES, topk's gap code, near
log2 C(D, K) bits), whichever is smaller (SIDE); `range` float32 K×2 (lo, hi; SIDE), `widths`
PACKED K×5 bits (SIDE; sent rather than recomputed so that client and server never disagree on
a float), `codes` PACKED 1-bit stream of the M×K codes at their widths (PAYLOAD).
Backward: the server quantizes the gradient's K kept columns the same way with `grad_bits`
(default `bits`) and its own ranges; `range`, `widths`, `codes` as above, no mask (the client
knows its columns). The client places them back, zeros elsewhere: the chain rule's dropped
gradients, straight through the quantizer for the kept ones.
Analytic (a bound, `exact_size = False`: the gap code's length varies): min(ceil(D/8), the
longest gap code) + 8K + ceil(5K/8) + ceil(M·budget/8) forward (M rows: N, or N·n for
`channel`), the same without the mask backward. Eval (`compressed`): `topk` selection (the most
dispersed columns, deterministic), same quantizer.
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, expect_tensor, register_method
from adcbench.core.params import Param
from adcbench.errors import ParamError, WireFormatError
from adcbench.methods.topk import _coded_set, _from_coded_set, support_bound
from adcbench.wire import Category, Field, bits_for, gap_decode, gap_encode, packed_nbytes

MAX_BITS = 16
_WIDTH_BITS = bits_for(MAX_BITS + 1)  # widths 0..16


def allocate_bits(ranges: torch.Tensor, budget: int) -> torch.Tensor:
    """Integer widths b (K,) in [0, 16] with sum b == budget minimizing sum R^2 4^-b (high-rate).

    Continuous optimum b = clamp(t + log2 R, 0, 16) with t from bisection, then floors plus one
    bit for the largest fractional parts (those below 16) until the budget is met."""
    K = ranges.numel()
    assert 0 <= budget <= MAX_BITS * K
    logr = ranges.double().clamp_min(1e-30).log2()
    lo, hi = -float(logr.max()) - 1, MAX_BITS - float(logr.min()) + 1
    for _ in range(60):  # sum clamp(t + log2 R) is monotone in t
        t = (lo + hi) / 2
        lo, hi = (t, hi) if float((t + logr).clamp(0, MAX_BITS).sum()) < budget else (lo, t)
    real = (hi + logr).clamp(0, MAX_BITS)
    b = real.floor()
    frac = real - b
    short = budget - int(b.sum())
    if short > 0:  # largest remainders first; full columns cannot take more
        frac = torch.where(b < MAX_BITS, frac, torch.full_like(frac, -1.0))
        b[frac.argsort(descending=True, stable=True)[:short]] += 1
    elif short < 0:  # bisection overshoot: take from the smallest remainders
        frac = torch.where(b > 0, frac, torch.full_like(frac, 2.0))
        b[frac.argsort(stable=True)[:-short]] -= 1
    return b.long()


def pack_codes(codes: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """M×K codes at per-column widths -> a flat 0/1 uint8 stream (row, column, bit order)."""
    t = torch.arange(MAX_BITS, device=codes.device, dtype=torch.int32)
    bits = (codes.to(torch.int32)[..., None] >> t) & 1
    use = (t < widths.to(codes.device)[:, None]).expand_as(bits)
    return bits[use].to(torch.uint8)


def unpack_codes(stream: torch.Tensor, widths: torch.Tensor, rows: int) -> torch.Tensor:
    """Inverse of `pack_codes`: M×K int32 codes."""
    t = torch.arange(MAX_BITS, device=stream.device, dtype=torch.int32)
    use = (t < widths.to(stream.device)[:, None]).expand(rows, -1, -1)
    place = torch.zeros(use.shape, dtype=torch.int32, device=stream.device)
    place[use] = stream.to(torch.int32)
    return (place << t).sum(-1)


@register_method("splitfc")
class SplitFC(Method):
    description = "SplitFC: std-adaptive feature-wise dropout + range-adaptive per-feature quantization, both ways"
    params = (
        Param("keep", float, 0.2, "fraction K/D of feature columns sent (the rest dropped)", low=0.0, high=1.0, low_open=True),
        Param("bits", float, 4.0, "mean bits per kept value (widths adapt per column)", low=0.0, high=16.0, low_open=True),
        Param("grad_bits", float, None, "mean bits per kept gradient value (default: bits)", low=0.0, high=16.0, low_open=True, optional=True),
        Param("feature", str, "element", "a column is one activation value (element) or one channel", choices=("element", "channel")),
        Param("selection", str, "sample", "training dropout: sample ∝ std, or keep the top-K std", choices=("sample", "topk")),
    )  # fmt: skip
    terminal = True
    eval_compressed = "the K most dispersed columns (deterministic top-K by std), quantized as in training"
    deployment_policy = "raw"  # a training-time cost: inference sends the activations uncompressed
    rate_param = ("keep", (0.5, 0.2, 0.05))
    field_categories = {
        "mask": Category.SIDE,
        "gaps": Category.SIDE,
        "range": Category.SIDE,
        "widths": Category.SIDE,
        "codes": Category.PAYLOAD,
    }
    exact_size = False  # the kept set's gap code depends on the positions; analytic is its bound

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._client_kept: torch.Tensor | None = None  # columns of the last training message
        self._server_kept: torch.Tensor | None = None

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        if len(in_shape) != 2 and self.config["feature"] == "channel":
            raise ParamError(f"splitfc: feature=channel needs n×d tokens, got per-sample shape {in_shape}")
        self.in_shape = tuple(in_shape)

    # -- shapes ---------------------------------------------------------------------------------
    def columns(self, in_shape: tuple[int, ...]) -> int:
        return in_shape[-1] if self.config["feature"] == "channel" else math.prod(in_shape)

    def rows(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return batch * math.prod(in_shape[:-1]) if self.config["feature"] == "channel" else batch

    def k(self, D: int) -> int:
        return min(D, max(1, round(self.config["keep"] * D)))

    def budget(self, K: int, bits: float) -> int:
        return min(MAX_BITS * K, max(1, round(bits * K)))

    @property
    def grad_bits(self) -> float:
        gb = self.config["grad_bits"]
        return self.config["bits"] if gb is None else gb

    # -- quantizer (both directions) --------------------------------------------------------------
    def _quantize(self, cols: torch.Tensor, bits: float) -> Fields:
        lo, hi = torch.aminmax(cols, dim=0)
        widths = allocate_bits(hi - lo, self.budget(cols.shape[1], bits)).to(cols.device)
        levels = ((1 << widths) - 1).to(cols.dtype)
        step = torch.where(levels > 0, (hi - lo) / levels.clamp_min(1), torch.zeros_like(lo))
        inv = torch.where(step > 0, 1 / step, torch.zeros_like(step))
        codes = ((cols - lo) * inv).round_().clamp_(torch.zeros_like(levels), levels)
        return {
            "range": Field.tensor(torch.stack([lo, hi], dim=1).contiguous(), Category.SIDE),
            "widths": Field.packed(widths.to(torch.uint8), _WIDTH_BITS, Category.SIDE),
            "codes": Field.packed(pack_codes(codes, widths), 1, Category.PAYLOAD),
        }

    def _dequantize(self, fields: Decoded, K: int, bits: float) -> torch.Tensor:
        who, budget = "splitfc", self.budget(K, bits)
        rng = expect_tensor(fields, "range", who, shape=(K, 2), dtype=torch.float32)
        if bool((rng[:, 1] < rng[:, 0]).any()):
            raise WireFormatError("splitfc: a range has hi < lo")
        widths = expect_tensor(fields, "widths", who, shape=(K,), high=MAX_BITS).long()
        if int(widths.sum()) != budget:
            raise WireFormatError(f"splitfc: widths sum to {int(widths.sum())} bits, expected {budget}")
        stream = expect_tensor(fields, "codes", who, ndim=1, high=1)
        if stream.numel() % budget:
            raise WireFormatError(f"splitfc: {stream.numel()} code bits is not a whole number of {budget}-bit rows")
        codes = unpack_codes(stream, widths, stream.numel() // budget).to(torch.float32)
        lo, hi = rng[:, 0], rng[:, 1]
        levels = ((1 << widths) - 1).to(torch.float32).to(rng.device)
        step = torch.where(levels > 0, (hi - lo) / levels.clamp_min(1), torch.zeros_like(lo))
        base = torch.where(levels > 0, lo, (lo + hi) / 2)  # a zero-bit column: its midpoint
        return base + codes.to(rng.device) * step

    def _matrix(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1]) if self.config["feature"] == "channel" else x.reshape(x.shape[0], -1)

    def _dense(self, cols: torch.Tensor, kept: torch.Tensor, D: int) -> torch.Tensor:
        """M×K kept columns -> the N×in_shape tensor with zeros in the dropped columns."""
        dense = torch.zeros(cols.shape[0], D, dtype=cols.dtype, device=cols.device)
        dense[:, kept.to(cols.device)] = cols
        return dense.reshape(-1, *self.in_shape)

    # -- client ---------------------------------------------------------------------------------
    def _select(self, z: torch.Tensor, ctx: Context) -> torch.Tensor:
        std = z.std(dim=0, correction=0)
        K = self.k(z.shape[1])
        if ctx.training and self.config["selection"] == "sample":
            w = (std.double().cpu() + 1e-12).nan_to_num(1e-12)  # CPU generator: device-independent
            kept = torch.multinomial(w, K, replacement=False, generator=ctx.generator)
        else:
            kept = std.topk(K, sorted=False).indices.cpu()
        return kept.sort().values

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, None]:
        z = self._matrix(x.detach().float())
        D = z.shape[1]
        kept = self._select(z, ctx)
        if ctx.training:
            self._client_kept = kept
        ctx.stats["splitfc.kept"] = float(kept.numel())
        return {**self._support(kept, D), **self._quantize(z[:, kept.to(z.device)], self.config["bits"])}, None

    def _support(self, kept: torch.Tensor, D: int) -> Fields:
        """The kept columns as a bitmap or as topk's gap code, whichever is smaller (ties: bitmap)."""
        K = kept.numel()
        gaps = gap_encode(_coded_set(kept[None], D, K), D)
        if len(gaps) < packed_nbytes(D, 1):
            return {"gaps": Field.raw(gaps, Category.SIDE)}
        return {"mask": Field.packed(torch.zeros(D, dtype=torch.uint8).index_fill_(0, kept, 1), 1, Category.SIDE)}

    def _read_support(self, fields: Decoded, D: int) -> torch.Tensor:
        K = self.k(D)
        if "gaps" in fields:
            data = fields["gaps"]
            if not isinstance(data, bytes):
                raise WireFormatError("splitfc: gaps must be a BYTES field")
            return _from_coded_set(gap_decode(data, 1, min(K, D - K), D), D, K).flatten().long()
        mask = expect_tensor(fields, "mask", "splitfc", shape=(D,), high=1)
        kept = mask.nonzero().flatten().cpu()
        if kept.numel() != K:
            raise WireFormatError(f"splitfc: mask keeps {kept.numel()} columns, expected {K}")
        return kept

    def decode_backward(self, fields: Decoded, ctx: Context) -> torch.Tensor:
        kept = self._client_kept  # kept (not cleared): a gradient may be decoded again
        if kept is None or set(fields) != {"range", "widths", "codes"}:
            raise WireFormatError("splitfc: gradient message needs exactly range, widths and codes (after a forward)")
        cols = self._dequantize(fields, kept.numel(), self.grad_bits)
        return self._dense(cols, kept, self.columns(self.in_shape))

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        names = set(fields)
        if names not in ({"mask", "range", "widths", "codes"}, {"gaps", "range", "widths", "codes"}):
            raise WireFormatError("splitfc: message needs exactly mask or gaps, range, widths and codes")
        D = self.columns(self.in_shape)
        kept = self._read_support(fields, D)
        cols = self._dequantize(fields, kept.numel(), self.config["bits"])
        per = math.prod(self.in_shape[:-1]) if self.config["feature"] == "channel" else 1
        if cols.shape[0] % per:
            raise WireFormatError(f"splitfc: {cols.shape[0]} rows is not a whole number of samples")
        if ctx.training:
            self._server_kept = kept
        return self._dense(cols, kept, D)

    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Fields:
        assert self._server_kept is not None, "decode_forward first"
        kept = self._server_kept
        return self._quantize(self._matrix(grad.detach().float())[:, kept.to(grad.device)], self.grad_bits)

    # -- analytic size --------------------------------------------------------------------------
    def _nbytes(self, batch: int, in_shape: tuple[int, ...], bits: float) -> int:
        K = self.k(self.columns(in_shape))
        return (
            8 * K + packed_nbytes(K, _WIDTH_BITS) + packed_nbytes(self.rows(batch, in_shape) * self.budget(K, bits), 1)
        )

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        D = self.columns(in_shape)
        mask = min(packed_nbytes(D, 1), support_bound(1, D, self.k(D)))
        return mask + self._nbytes(batch, in_shape, self.config["bits"]), batch

    def analytic_backward(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return self._nbytes(batch, in_shape, self.grad_bits)
