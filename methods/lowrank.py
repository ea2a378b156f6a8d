"""`lowrank`: per-sample rank-r factorization of the n×d activation, X ≈ P Qᵀ.

Q (d×r, orthonormal columns) spans the top-r right singular subspace of X: approximately, by
`iters` subspace (power) iterations from a seeded random start, orthonormalized by QR each time, as
PowerSGD does for gradients (`solver=power`, the default; Vogels et al., NeurIPS 2019), or exactly
by a truncated SVD (`solver=svd`, about 7x the client time at DeiT-T shapes:
docs/benchmarks/methods-new.md). Then P = X Q (n×r), and P Qᵀ = X Q Qᵀ is the projection of X onto that subspace
-- with the exact Q, the rank-r truncated SVD of X (Eckart-Young optimal).

Wire: Q travels as this stage's field `q` (N×d×r, float32 or float16: `factors`; SIDE). P is the
stage's `rest` (N×n×r), so the next stage puts it on the wire: float32, or float16 with
`factors=float16` (when lowrank ends the chain), or quantized (`lowrank:rank=8+quant:bits=8`).
The client computes P from the Q the server will see (after the cast), so both sides share Q.
Analytic: N·d·r·itemsize + the terminal's size for N×n×r values.

Backward: the server's X̂ = P Qᵀ is differentiable in P, so the gradient message is dL/dP = G Q
(N×n×r: a rank-r gradient); the client's autograd gives dL/dX = G Q Qᵀ, the gradient of the
projection with Q held constant (no gradient through the subspace itself).
Eval (`compressed`): the same factorization; `power` starts from a fixed seed, so evaluation is
deterministic and leaves the training generator alone.
"""

from __future__ import annotations

from typing import Any

import torch

from adcbench.core.method import Context, Cut, Decoded, Fields, Method, register_method
from adcbench.core.params import Param
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Category, Field

_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_EVAL_SEED = 0


def subspace(x: torch.Tensor, rank: int, solver: str, iters: int, generator: torch.Generator | None) -> torch.Tensor:
    """N×d×rank orthonormal bases of the (approximate) top-rank right singular subspaces of x (N×n×d)."""
    if solver == "svd":
        return torch.linalg.svd(x, full_matrices=False).Vh[:, :rank].transpose(1, 2).contiguous()
    N, _, d = x.shape
    q = torch.randn(N, d, rank, generator=generator).to(device=x.device, dtype=x.dtype)  # CPU draw: same on any device
    q = torch.linalg.qr(q).Q
    for _ in range(iters):
        p = torch.linalg.qr(x @ q).Q  # n×r
        q = torch.linalg.qr(x.transpose(1, 2) @ p).Q  # d×r
    return q


@register_method("lowrank")
class LowRank(Method):
    description = "per-sample rank-r factorization X ≈ P Qᵀ (truncated SVD or PowerSGD-style power iterations)"
    params = (
        Param("rank", int, 8, "rank r of each sample's n×d factorization", low=1),
        Param(
            "solver", str, "power", "power iterations (PowerSGD), or an exact truncated SVD", choices=("power", "svd")
        ),
        Param("iters", int, 2, "power iterations (solver=power)", low=1, high=100),
        Param(
            "factors",
            str,
            "float32",
            "wire dtype of the factors Q and P (P: when lowrank ends the chain)",
            choices=tuple(_DTYPES),
        ),
    )
    eval_compressed = "same factorization as training (power iterations from a fixed seed)"
    deployment_policy = "compressed"
    rate_param = ("rank", (8, 4, 1))
    field_categories = {"q": Category.SIDE}

    def setup(self, cut: Cut, in_shape: tuple[int, ...]) -> None:
        super().setup(cut, in_shape)
        if len(in_shape) != 2 or self.config["rank"] > min(in_shape):
            raise ParamError(f"lowrank: rank={self.config['rank']} exceeds min(n, d) for activations {in_shape}")
        self.in_shape = tuple(in_shape)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.config["factors"]]

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return (in_shape[0], self.config["rank"])

    def default_terminal(self) -> tuple[str, dict[str, Any]]:
        return "float", ({} if self.config["factors"] == "float32" else {"dtype": self.config["factors"]})

    def nominal_ratio(self) -> float:
        n, d = self.in_shape
        return self.config["rank"] * (n + d) / (n * d)

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        gen = ctx.generator if ctx.training else torch.Generator().manual_seed(_EVAL_SEED)
        cfg = self.config
        q = subspace(x.detach().float(), cfg["rank"], cfg["solver"], cfg["iters"], gen).to(self.dtype)
        p = x @ q.to(x.dtype)  # in x's graph: the gradient of P reaches X as G Q Qᵀ
        return {"q": Field.tensor(q.contiguous(), Category.SIDE)}, p

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        N, (_, d), r = rest.shape[0], self.in_shape, self.config["rank"]
        q = fields.get("q")
        if not isinstance(q, torch.Tensor) or len(fields) != 1 or q.dtype != self.dtype or tuple(q.shape) != (N, d, r):
            raise WireFormatError(
                f"lowrank: expected exactly the field q, {self.config['factors']} of shape {(N, d, r)}"
            )
        q = q.float()
        if not torch.isfinite(q).all():
            raise WireFormatError("lowrank: factor q has non-finite values")
        return rest @ q.transpose(1, 2)

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return batch * in_shape[1] * self.config["rank"] * itemsize, batch
