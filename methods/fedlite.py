"""`fedlite`: product quantization of the activations (Wang et al., "FedLite: A Scalable Approach
for Federated Learning on Resource-constrained Clients", 2022, arXiv 2201.11865).

Each sample's n×d activation is cut into q = n·d/`subdim` sub-vectors of `subdim` consecutive
values (token-wise: `subdim` divides d). The q sub-vector positions are split into R = `groups`
contiguous groups; every group has its own codebook of l codewords, learned on this batch by
K-means over the N·q/R sub-vectors of the group (Lloyd, `iters` iterations, init: l points drawn
with the side's seeded generator, empty clusters keep their centroid). Each sub-vector is
replaced by its nearest codeword.

Wire: `codes` PACKED N×q, ceil(log2 l) bits each (PAYLOAD); `codebook` float32 R×l×subdim (SIDE).
The receiver rejects codes >= l and non-finite or misshapen codebooks.
Analytic: ceil8(N·q·ceil(log2 l)) + 4·R·l·subdim bytes forward; 4·N·n·d backward.

Backward (as the paper): the server returns the float32 gradient g with respect to the quantized
activation z~ (N×n×d, uncompressed; FedLite compresses the uplink only), and the client applies it
to z straight through the quantizer. With `correction` = lambda > 0 the client adds the paper's
gradient-correction term lambda·grad_z ||z - z~||^2 = 2·lambda·(z - z~) (z~ held constant).
Eval (`compressed`): the same quantizer on the eval batch, K-means seeded with a fixed seed so
that evaluation does not depend on (or advance) the training generator.

Deviations: the ADC authors' code (C1, never wired) charges a formula with A = 192·197 hard-coded
and assumes a compressed gradient; here the bytes are the encoded fields, and the gradient goes
back uncompressed as in the FedLite paper.
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, register_method
from adcbench.core.params import Param
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Category, Field, bits_for, packed_nbytes

_EVAL_SEED = 0  # fixed K-means seed for evaluation messages


def batched_kmeans(points: torch.Tensor, k: int, iters: int, generator: torch.Generator | None) -> torch.Tensor:
    """Lloyd's K-means run independently on each of G point sets (points: G×M×s).

    Returns the G×k×s centroids. Init: k distinct points per set (with replacement when M < k),
    drawn with `generator` on the CPU so the same seed gives the same codebook on every device.
    Empty clusters keep their previous centroid."""
    G, M, _ = points.shape
    if M >= k:
        init = torch.stack([torch.randperm(M, generator=generator)[:k] for _ in range(G)])
    else:
        init = torch.randint(M, (G, k), generator=generator)
    init = init.to(points.device)
    centroids = points.gather(1, init.unsqueeze(-1).expand(-1, -1, points.shape[2])).clone()
    s = points.shape[2]
    flat = points.reshape(G * M, s)
    offset = (torch.arange(G, device=points.device) * k)[:, None]  # cluster j of set g -> row g·k + j
    for _ in range(iters):
        assign = (nearest(points, centroids) + offset).flatten()
        counts = torch.bincount(assign, minlength=G * k).reshape(G, k, 1).to(points.dtype)
        sums = torch.zeros(G * k, s, dtype=points.dtype, device=points.device).index_add_(0, assign, flat)
        centroids = torch.where(counts > 0, sums.reshape(G, k, s) / counts.clamp_min(1), centroids)
    return centroids


def nearest(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean) for each point: G×M."""
    # ||p - c||^2 = ||p||^2 - 2 p.c + ||c||^2; ||p||^2 does not change the argmin.
    scores = torch.baddbmm((centroids * centroids).sum(-1).unsqueeze(1), points, centroids.transpose(1, 2), alpha=-2)
    return scores.argmin(-1)


@register_method("fedlite")
class FedLite(Method):
    description = "FedLite product quantization: q sub-vectors per sample, per-group K-means codebook of l codewords"
    params = (
        Param("l", int, 16, "codewords per codebook (codes take ceil(log2 l) bits)", low=2, high=65536),
        Param("subdim", int, 32, "values per sub-vector (divides d); q = n·d/subdim", low=1),
        Param("groups", int, 1, "R: codebooks, each shared by q/R consecutive sub-vector positions", low=1),
        Param("iters", int, 10, "K-means iterations per batch (the authors' code: 10)", low=1, high=1000),
        Param("correction", float, 0.0, "lambda of the gradient correction 2·lambda·(z - z~) (0: off)", low=0.0),
    )
    terminal = True
    eval_compressed = "product-quantized as in training (K-means with a fixed seed per eval batch)"
    deployment_policy = "compressed"
    rate_param = ("l", (64, 16, 4))
    field_categories = {"codes": Category.PAYLOAD, "codebook": Category.SIDE, "g": Category.PAYLOAD}

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._residual: torch.Tensor | None = None  # client: z - z~ of the last training message

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        s, R = self.config["subdim"], self.config["groups"]
        if len(in_shape) != 2 or in_shape[-1] % s:
            raise ParamError(f"fedlite: subdim={s} must divide the token width d={in_shape[-1]}")
        q = math.prod(in_shape) // s
        if q % R:
            raise ParamError(f"fedlite: groups={R} must divide the q={q} sub-vectors per sample")
        self.in_shape = tuple(in_shape)

    def q(self, in_shape: tuple[int, ...]) -> int:
        return math.prod(in_shape) // self.config["subdim"]

    def nominal_ratio(self) -> float:
        # The ADC authors' (unwired) charge: 1/2 [(32 A R l / q + B q log2 l) / (32 A B) + 32 A R l / (32 A B q)],
        # A = 192·197 hard-coded there (= n·d at DeiT-T; n·d here). Its downlink term is codebook-sized.
        assert self.cut is not None, "setup() first"
        A, B, R, L = math.prod(self.in_shape), self.cut.batch_size, self.config["groups"], self.config["l"]
        q = self.q(self.in_shape)
        up = (32 * A * R * L / q + B * q * math.log2(L)) / (32 * A * B)
        return 0.5 * (up + 32 * A * R * L / (32 * A * B * q))

    # -- client ---------------------------------------------------------------------------------
    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, None]:
        L, s, R = self.config["l"], self.config["subdim"], self.config["groups"]
        N = x.shape[0]
        z = x.detach().float().reshape(N, -1, s)  # N×q×s
        q = z.shape[1]
        points = z.reshape(N, R, q // R, s).transpose(0, 1).reshape(R, N * (q // R), s)
        gen = ctx.generator if ctx.training else torch.Generator().manual_seed(_EVAL_SEED)
        codebook = batched_kmeans(points, L, self.config["iters"], gen)
        codes = nearest(points, codebook)  # R×(N·q/R)
        codes = codes.reshape(R, N, q // R).transpose(0, 1).reshape(N, q)
        if ctx.training and self.config["correction"] > 0:
            self._residual = x.detach().float() - self._reconstruct(codes, codebook, tuple(x.shape))
        ctx.stats["fedlite.q"] = q
        return {
            "codes": Field.packed(codes.to(torch.int32), bits_for(L), Category.PAYLOAD),
            "codebook": Field.tensor(codebook.contiguous(), Category.SIDE),
        }, None

    def _reconstruct(self, codes: torch.Tensor, codebook: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        R, L, s = codebook.shape
        N, q = codes.shape
        group = torch.arange(q, device=codes.device) // (q // R)  # codebook of each position
        return codebook.reshape(R * L, s)[codes + group * L].reshape(shape)

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        L, s, R = self.config["l"], self.config["subdim"], self.config["groups"]
        codes, codebook = fields.get("codes"), fields.get("codebook")
        if not isinstance(codes, torch.Tensor) or not isinstance(codebook, torch.Tensor) or len(fields) != 2:
            raise WireFormatError("fedlite: message needs exactly the fields codes and codebook")
        q = self.q(self.in_shape)
        if codes.dim() != 2 or codes.shape[1] != q:
            raise WireFormatError(f"fedlite: codes of shape {tuple(codes.shape)}, expected (N, {q})")
        if codebook.dtype != torch.float32 or tuple(codebook.shape) != (R, L, s):
            raise WireFormatError(f"fedlite: codebook must be float32 of shape {(R, L, s)}")
        if not torch.isfinite(codebook).all():
            raise WireFormatError("fedlite: codebook has non-finite values")
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= L):
            raise WireFormatError(f"fedlite: codes outside [0, {L})")
        return self._reconstruct(codes, codebook, (codes.shape[0], *self.in_shape))

    def encode_backward(self, grad: torch.Tensor, ctx: Context) -> Fields:
        return {"g": Field.tensor(grad.detach().float().contiguous(), Category.PAYLOAD)}

    def decode_backward(self, fields: Decoded, ctx: Context) -> torch.Tensor:
        g = fields.get("g")
        if not isinstance(g, torch.Tensor) or g.dtype != torch.float32 or len(fields) != 1:
            raise WireFormatError("fedlite: gradient message needs exactly the float32 field g")
        residual, self._residual = self._residual, None
        if residual is not None and residual.shape == g.shape:
            return g + (2 * self.config["correction"]) * residual.to(g.device)
        return g

    # -- analytic size --------------------------------------------------------------------------
    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        L, s, R = self.config["l"], self.config["subdim"], self.config["groups"]
        codes = packed_nbytes(batch * self.q(in_shape), bits_for(L))
        return codes + 4 * R * L * s, batch

    def analytic_backward(self, batch: int, in_shape: tuple[int, ...]) -> int:
        return 4 * batch * math.prod(in_shape)
