"""`tokenprune`: attention-based token pruning without merging -- the ablation between `none`
and `adc` (ADC's token selection, applied per sample, with no batch merging).

Each sample keeps k = max(p, floor(ratio·n)) tokens: its p prefix tokens (CLS) and the top-(k-p)
patch tokens by the head-averaged CLS attention of the last client block (the same scores ADC
uses; `needs_attention`). Kept tokens are sent in ascending position order.

Wire: no fields of its own; the N×k×d kept tokens are `rest` for the next stage (float32 by
default). Token positions are NOT sent: positional embeddings were added on the client, and the
server's blocks are permutation-equivariant with CLS pooling, so the server's output does not
depend on which positions the tokens came from or their order (tests check this). This holds
for `global_pool='token'` and `'avg'`.
Analytic: the terminal's size for N×k×d values. Labels: sent by the pipeline as integers.
Backward: autograd scatters the N×k×d gradient back to the kept rows; pruned tokens get 0.
Eval (`compressed`): the same per-sample selection as training.
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Decoded, Fields, Method, register_method
from adcbench.core.params import Param

_EPS = 1e-9  # floor(0.1 * 130) must be 13, not 12.999...


def top_tokens(scores: torch.Tensor, k: int, prefix: int) -> torch.Tensor:
    """Row-wise: the `prefix` first positions, then the top-(k - prefix) others, ascending."""
    rows = scores.shape[0]
    head = torch.arange(prefix, device=scores.device).expand(rows, prefix)
    if k == prefix:
        return head.contiguous()
    top = scores[:, prefix:].topk(k - prefix, dim=1).indices + prefix
    return torch.cat([head, top.sort(dim=1).values], dim=1)


@register_method("tokenprune")
class TokenPrune(Method):
    description = "keep CLS + the top-k tokens per sample by last-block CLS attention (no merging)"
    params = (
        Param("ratio", float, 0.25, "fraction k/n of tokens kept (CLS included)", low=0.0, high=1.0, low_open=True),
    )
    needs_attention = True
    eval_compressed = "same per-sample token selection as training"
    deployment_policy = "raw"
    rate_param = ("ratio", (0.5, 0.25, 0.1))
    field_categories = {}  # no fields of its own

    def tokens(self, n: int) -> int:
        p = self.cut.prefix_tokens if self.cut else 1
        return min(n, max(p, math.floor(self.config["ratio"] * n + _EPS)))

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        n, d = in_shape
        return (self.tokens(n), d)

    def output_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return self.rest_shape(in_shape, training)  # the server works on the kept tokens

    def select_rows(self, ctx: Context) -> torch.Tensor:
        """The kept tokens are the only rows read."""
        ctx.plan = self._kept(ctx)
        return ctx.plan

    def _kept(self, ctx: Context) -> torch.Tensor:
        if ctx.attention is None:
            raise RuntimeError("tokenprune needs the client's attention scores (ctx.attention)")
        p = self.cut.prefix_tokens if self.cut else 1
        return top_tokens(ctx.attention.detach().float(), self.tokens(ctx.attention.shape[1]), p)

    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        d = x.shape[2]
        idx = ctx.plan if ctx.plan is not None else self._kept(ctx)
        return {}, x.gather(1, idx.unsqueeze(-1).expand(-1, -1, d))

    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None
        return rest

    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        return 0, batch
