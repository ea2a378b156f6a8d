"""`c3sl`: C3-SL batch-wise circular-convolution binding (Hsieh et al., 2022).

Each sample's activation is flattened to D = n·d values. Groups of R consecutive samples are
each circularly convolved with their own fixed random key (Gaussian, normalized to unit norm, not
trained) and summed into one D-vector, so the batch crosses as ceil(B/R) vectors. The server
unbinds by circular correlation with each key, which returns the R members plus crosstalk noise.
Both operations run in the Fourier domain (rfft), and autograd through them carries the gradient:
the backward message is the gradient with respect to the ceil(B/R)×D bound vectors.

Keys: derived from `seed` on both sides (torch.Generator(seed), one row of R×D normal draws per
key). This assumes the client and the server agreed on the seed beforehand (as they agree on the
spec); the keys are never sent and cost no bytes. The authors' code likewise builds the keys once
on each side of an in-process model.

Batch size: training batches must be a multiple of R (ParamError at setup otherwise; the paper
uses drop_last). A batch that is not a multiple (the last eval batch) is padded with zero samples
to the next multiple; the true count then travels as a 4-byte `count` field (SIDE, uint32), and
the server drops the padding. Analytic: 4·[B mod R != 0] bytes + the terminal's size for
ceil(B/R)×D values. Eval (`compressed`): binding as in training (the authors evaluate without it;
that is the `raw` policy).
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, register_method
from adcbench.core.params import Param
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Category, Field


@register_method("c3sl")
class C3SL(Method):
    description = "C3-SL: R samples bound into one vector by circular convolution with fixed random keys"
    params = (
        Param("R", int, 4, "samples bound per transmitted vector (rate 1/R)", low=1, high=4096),
        Param("seed", int, 0, "seed of the keys, shared by client and server (keys are not sent)", low=0),
    )
    eval_compressed = "bound as in training; a batch that is not a multiple of R is zero-padded"
    # Deployed compressed (issue 14): a C3-SL server never receives raw activations. The reference
    # code switches binding off in eval() (docs/paper-reference.md §3); that is the raw policy, reported beside.
    deployment_policy = "compressed"
    rate_param = ("R", (2, 4, 8))
    field_categories = {"count": Category.SIDE}

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        R = self.config["R"]
        if cut.batch_size % R:
            raise ParamError(f"c3sl: batch size {cut.batch_size} is not a multiple of R={R}")
        self.in_shape = tuple(in_shape)
        D = math.prod(in_shape)
        gen = torch.Generator().manual_seed(self.config["seed"])
        keys = torch.randn(R, D, generator=gen, dtype=torch.float64)
        keys = (keys / keys.norm(dim=1, keepdim=True)).float()
        self.key_spectra = torch.fft.rfft(keys, dim=1)  # R×(D//2+1), fixed

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return (math.prod(in_shape),)

    def nominal_ratio(self) -> float:
        return 1 / self.config["R"]

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        R = self.config["R"]
        N = x.shape[0]
        flat = x.reshape(N, -1)
        D = flat.shape[1]
        M = -(-N // R)
        fields: Fields = {}
        if M * R != N:
            flat = torch.cat([flat, flat.new_zeros(M * R - N, D)])
            fields["count"] = Field.tensor(torch.tensor([N], dtype=torch.uint32), Category.SIDE)
        spectra = torch.fft.rfft(flat.reshape(M, R, D), dim=2)
        bound = torch.fft.irfft((spectra * self.key_spectra.to(spectra.device)).sum(1), n=D, dim=1)
        return fields, bound

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        R = self.config["R"]
        M, D = rest.shape
        count = M * R
        if "count" in fields:
            c = fields["count"]
            if not isinstance(c, torch.Tensor) or c.dtype != torch.uint32 or tuple(c.shape) != (1,):
                raise WireFormatError("c3sl: count must be one uint32")
            count = int(c[0])
            if not (M - 1) * R < count < M * R:
                raise WireFormatError(f"c3sl: count {count} does not fit {M} bound vectors of {R} samples")
        elif len(fields):
            raise WireFormatError(f"c3sl: unexpected fields {sorted(fields)}")
        spectrum = torch.fft.rfft(rest, dim=1)
        members = torch.fft.irfft(spectrum[:, None, :] * self.key_spectra.conj().to(rest.device), n=D, dim=2)
        return members.reshape(M * R, *self.in_shape)[:count]

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        R = self.config["R"]
        return (4 if batch % R else 0), -(-batch // R)
