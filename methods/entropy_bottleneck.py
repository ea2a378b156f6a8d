"""`entropy-bottleneck`: a learned autoencoder whose latents are quantized and range-coded with
CompressAI's `EntropyBottleneck` (the factorized prior of Ballé et al., "Variational image
compression with a scale hyperprior", ICLR 2018, without the hyperprior), trained with a
rate-distortion term; and `entropy-code`, the coder alone as a terminal stage.

`entropy-bottleneck:ratio=r,lambda=l` is `bottleneck:ratio=r` (the same token-wise MLP pair,
d -> d' on the client, d' -> d on the server) ending in `entropy-code:lambda=l`.

`entropy-code` (terminal): one learned density per channel (the last axis, C channels), owned and
trained by the client. Each message: the client rebuilds the CDF tables from the current density
(`update(force=True)`), symbols are round(x - median) clamped to the table's range, and the N·n·C
symbols are rANS-coded in one string (CompressAI's `ans` coder, 16-bit precision). The server
receives the tables it needs to decode, so it holds no copy of the density.
Training: the client adds lambda·R + aux to its loss (a hook on the coded tensor adds its gradient
during the client's backward), R = the estimated bits (-log2 of the
likelihood of x + U(-1/2, 1/2), CompressAI's training proxy) per value of the cut (N·n·d), aux =
CompressAI's quantile loss; the gradient is the server's (straight through the rounding) plus the
rate term's, and the density's parameters are trained by the client's optimizer (CompressAI uses a
separate optimizer for the quantiles). The quantiles are kept within MAX_SYMBOLS / 2 - 1 of the
median so every table fits the decoder's cap (a projection step after each update).

Wire: `strings` BYTES (PAYLOAD, the range coder's output, exactly what is counted), `cdf` PACKED
17-bit CDF tables concatenated, `cdf_length` and `minima` PACKED per channel, `median` float32 per
channel, `batch` PACKED 16 bits (all SIDE). Backward: `g` float32 (the gradient of the decoded
latents). Analytic: an upper bound (`exact_size = False`): 2 bytes per symbol (a symbol costs at
most 16 bits at 16-bit precision, and no symbol is escaped) + 16, plus the tables at their cap.
Measured and estimated bytes per message go to the step stats (`entropy.coded_bytes`,
`entropy.estimate_bytes`, the latter -log2 p of the symbols actually sent).
The receiver checks every table (0 first, 2^16 last, strictly increasing), the counts, the string
length against the bound, decodes a zero-padded copy (so no read runs past the buffer), and
re-encodes the symbols: a string that is not exactly what the encoder produces is rejected.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, expect_tensor, register_method
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.methods.bottleneck import Bottleneck
from adcbench.wire import Category, Field, bits_for, packed_nbytes

# Two steps: compressai's metadata pins numpy<2, under pyarrow's minimum (pyproject.toml, codecs).
INSTALL = 'pip install -e ".[codecs]" && pip install --no-deps compressai==1.2.8'
MAX_SYMBOLS = 256  # table entries per channel the decoder accepts (pmf length + 2 <= this)
_HALF = MAX_SYMBOLS // 2 - 2  # quantile reach on either side of the median
_TOP = 1 << 16  # CompressAI's CDF precision: tables run from 0 to 2^16
_CDF_BITS = bits_for(_TOP + 1)
_LEN_BITS = bits_for(MAX_SYMBOLS + 1)
_FIELDS = {"strings", "cdf", "cdf_length", "minima", "median", "batch"}


def _compressai() -> tuple[Any, Any]:
    """CompressAI's EntropyBottleneck and rANS module. Imported here, on first build, because it
    is an optional extra whose import costs seconds (it loads torch_geometric): listing methods or
    running any other method never pays it."""
    from compressai import ans
    from compressai.entropy_models import EntropyBottleneck

    return EntropyBottleneck, ans


class _Tables:
    """One message's CDF tables in the form the rANS coder takes."""

    def __init__(self, cdf: list[list[int]], lengths: list[int], offsets: list[int]) -> None:
        self.cdf, self.lengths, self.offsets = cdf, lengths, offsets

    def code(self, symbols: torch.Tensor) -> bytes:
        """Range-code C×M integer symbols (channel-major) with channel c's table."""
        _, ans = _compressai()
        idx = torch.arange(symbols.shape[0]).repeat_interleave(symbols.shape[1])
        enc = ans.RansEncoder()
        return enc.encode_with_indexes(symbols.flatten().tolist(), idx.tolist(), self.cdf, self.lengths, self.offsets)


@register_method("entropy-code")
class EntropyCode(Method):
    description = "CompressAI factorized-prior range coder (learned per-channel density), rate-distortion trained"
    params = (Param("lambda", float, 0.01, "rate weight: loss + lambda · estimated bits per cut value", low=0.0),)
    terminal = True
    requires = ("compressai",)
    install = INSTALL
    exact_size = False  # range-coded: the analytic size is an upper bound
    rate_trained = True  # lambda acts through training; bytes at initialization do not depend on it
    eval_compressed = "range-coded with the current density, as in training"
    deployment_policy = "compressed"  # the learned codec is part of the model
    rate_param = ("lambda", (0.001, 0.01, 0.1))
    field_categories = dict.fromkeys(_FIELDS, Category.SIDE) | {"strings": Category.PAYLOAD, "g": Category.PAYLOAD}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._loss: torch.Tensor | None = None  # client: lambda·R + aux of the last training message
        self._input: torch.Tensor | None = None

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        EntropyBottleneck, _ = _compressai()
        self.in_shape = tuple(in_shape)
        self.client_module = EntropyBottleneck(in_shape[-1])

    @property
    def eb(self) -> Any:
        assert self.client_module is not None, "setup() first"
        return self.client_module

    def _tables(self) -> _Tables:
        eb = self.eb
        with torch.no_grad():  # keep every table within the decoder's cap
            q = eb.quantiles.data
            q[:, 0, 0] = torch.maximum(q[:, 0, 0], q[:, 0, 1] - _HALF)
            q[:, 0, 2] = torch.minimum(q[:, 0, 2], q[:, 0, 1] + _HALF)
        eb.update(force=True)
        lengths = eb._cdf_length.tolist()
        cdf = [row[:n] for row, n in zip(eb._quantized_cdf.tolist(), lengths)]
        return _Tables(cdf, lengths, eb._offset.tolist())

    # -- client ---------------------------------------------------------------------------------
    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, None]:
        C, N = x.shape[-1], x.shape[0]
        if N >= 1 << 16:
            raise WireFormatError(f"entropy-code: batch {N} does not fit its 16-bit count")
        v = x.reshape(-1, C).t()  # C×M, channel-major
        tables = self._tables()
        median = self.eb.quantiles[:, 0, 1].detach().to(x.device)
        off = torch.tensor(tables.offsets, device=x.device)
        top = off + torch.tensor(tables.lengths, device=x.device) - 3  # the escape symbol is never used
        sym = torch.round(v.detach() - median[:, None]).clamp_(off[:, None], top[:, None]).to(torch.int32)
        string = tables.code(sym.cpu())
        with torch.no_grad():
            lik, _, _ = self.eb._likelihood((sym + median[:, None])[:, None])
            ctx.stats["entropy.estimate_bytes"] = float(-self.eb.likelihood_lower_bound(lik).log2().sum()) / 8
        ctx.stats["entropy.coded_bytes"] = float(len(string))
        if ctx.training and x.requires_grad:
            assert self.cut is not None
            _, lik = self.eb(v[None], training=True)  # noisy proxy; grads to x and the density
            bits = -lik.log2().sum()
            cut_values = N * self.cut.tokens * self.cut.dim
            self._loss, self._input = self.config["lambda"] * bits / cut_values + self.eb.loss(), x
            x.register_hook(self._add_rate_gradient)  # x is what the server's gradient is pushed into
        flat_cdf = torch.tensor([c for row in tables.cdf for c in row], dtype=torch.int32)
        return {
            "strings": Field.raw(string, Category.PAYLOAD),
            "cdf": Field.packed(flat_cdf, _CDF_BITS, Category.SIDE),
            "cdf_length": Field.packed(torch.tensor(tables.lengths, dtype=torch.int32), _LEN_BITS, Category.SIDE),
            "minima": Field.packed(-off.cpu().to(torch.int32), _LEN_BITS, Category.SIDE),
            "median": Field.tensor(median.float().cpu().contiguous(), Category.SIDE),
            "batch": Field.packed(torch.tensor([N], dtype=torch.int32), 16, Category.SIDE),
        }, None

    def decode_backward(self, fields: Decoded, ctx: Context) -> torch.Tensor:
        g = fields.get("g")
        if set(fields) != {"g"} or not isinstance(g, torch.Tensor) or g.dtype != torch.float32:
            raise WireFormatError("entropy-code: gradient message needs exactly the float32 field g")
        return g

    def _add_rate_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """Hook on the coded tensor, run by the client's backward: adds the gradient of
        lambda·R + aux to the server's (after the optimizer's zero_grad) and accumulates the
        density's own gradients. Not loss-scaled: with fp16 AMP use bf16 or float32 instead."""
        loss, inp, self._loss, self._input = self._loss, self._input, None, None
        if loss is None or inp is None:
            return grad
        params = [p for p in self.eb.parameters() if p.requires_grad]
        gx, *gp = torch.autograd.grad(loss, [inp, *params], allow_unused=True)
        for p, g in zip(params, gp):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return grad if gx is None else grad + gx.to(grad.dtype)

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        if set(fields) != _FIELDS:
            raise WireFormatError(f"entropy-code: message needs exactly the fields {sorted(_FIELDS)}")
        C, per = self.in_shape[-1], math.prod(self.in_shape[:-1])
        N = int(expect_tensor(fields, "batch", "entropy-code", shape=(1,), low=1, high=(1 << 16) - 1)[0])
        tables, median = self._read_tables(fields, C)
        data = fields["strings"]
        if not isinstance(data, bytes) or len(data) > self._string_bound(N * per * C):
            raise WireFormatError("entropy-code: strings must be BYTES within the bound of 2 bytes per symbol")
        _, ans = _compressai()
        M = N * per
        idx = torch.arange(C).repeat_interleave(M).tolist()
        pad = bytes(8 * len(data) + 4 * M * C + 1024)  # the decoder never reads past the buffer
        dec = ans.RansDecoder().decode_with_indexes(data + pad, idx, tables.cdf, tables.lengths, tables.offsets)
        sym = torch.tensor(dec, dtype=torch.int32).reshape(C, M)
        off = torch.tensor(tables.offsets, dtype=torch.int32)[:, None]
        top = off + torch.tensor(tables.lengths, dtype=torch.int32)[:, None] - 3
        if bool(((sym < off) | (sym > top)).any()) or tables.code(sym) != data:
            raise WireFormatError("entropy-code: strings do not decode to a canonical code of in-range symbols")
        y = (sym.to(median.device).float() + median[:, None]).t()  # the range coder works on the CPU
        return y.reshape(N, *self.in_shape)

    def _read_tables(self, fields: Decoded, C: int) -> tuple[_Tables, torch.Tensor]:
        who = "entropy-code"
        lengths = expect_tensor(fields, "cdf_length", who, shape=(C,), low=3, high=MAX_SYMBOLS).long()
        minima = expect_tensor(fields, "minima", who, shape=(C,), high=MAX_SYMBOLS).long()
        if bool((minima > lengths - 3).any()):
            raise WireFormatError(f"{who}: a channel's minimum lies outside its table")
        cdf = expect_tensor(fields, "cdf", who, shape=(int(lengths.sum()),), high=_TOP).long()
        median = expect_tensor(fields, "median", who, shape=(C,), dtype=torch.float32)
        if bool((median.abs() > 1e6).any()):
            raise WireFormatError(f"{who}: medians out of range")
        rows = list(torch.split(cdf, lengths.tolist()))
        for r in rows:  # CompressAI's tables: 0 first, 2^16 last, every symbol at least 1/2^16
            if int(r[0]) != 0 or int(r[-1]) != _TOP or bool((r.diff() <= 0).any()):
                raise WireFormatError(f"{who}: a CDF table is not strictly increasing from 0 to 2^16")
        return _Tables([r.tolist() for r in rows], lengths.tolist(), (-minima).tolist()), median

    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Fields:
        return {"g": Field.tensor(grad.detach().float().contiguous(), Category.PAYLOAD)}

    # -- analytic size --------------------------------------------------------------------------
    @staticmethod
    def _string_bound(symbols: int) -> int:
        return 2 * symbols + 16

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        C = in_shape[-1]
        tables = packed_nbytes(C * MAX_SYMBOLS, _CDF_BITS) + 2 * packed_nbytes(C, _LEN_BITS) + 4 * C + 2
        return self._string_bound(batch * math.prod(in_shape)) + tables, batch

    def analytic_backward(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return 4 * batch * math.prod(in_shape)


@register_method("entropy-bottleneck")
class EntropyBottleneckAE(Bottleneck):
    description = "learned autoencoder d -> d' whose latents are range-coded by CompressAI's factorized prior"
    params = (
        *Bottleneck.params,
        Param("lambda", float, 0.01, "rate weight of the entropy-code terminal (loss + lambda · bits/value)", low=0.0),
    )
    requires = ("compressai",)
    install = INSTALL
    eval_compressed = "the autoencoder and the range coder run as in training"

    def default_terminal(self) -> tuple[str, dict[str, Any]]:
        return "entropy-code", {"lambda": self.config["lambda"]}

    # No paper cost model (the bytes are the range coder's): not Bottleneck's ratio but the
    # base's None, by identity, so the catalog refuses --budget-accounting nominal before torch.
    nominal_ratio = Method.nominal_ratio
