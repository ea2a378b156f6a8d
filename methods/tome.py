"""`tome`: token merging inside each sample by bipartite soft matching (Bolya et al., "Token
Merging: Your ViT But Faster", ICLR 2023), applied once at the cut.

Each sample keeps k = max(p + 1, floor(ratio·n)) tokens: its p prefix tokens (CLS, never merged)
and k - p merged patch tokens. A round of bipartite soft matching splits the m current patch tokens
alternately into sets A and B, links every A token to its most similar B token (cosine similarity),
and merges the r most similar A tokens into their B partners by a size-weighted average (sizes
add up); rounds repeat until n - k tokens are gone (one round removes at most ceil(m/2)).

Proportional attention (`proportional=true`, the paper's default): the server needs each merged
token's size s. They travel as `sizes` (PACKED N×(k-p), s - 1 in ceil(log2(n - p)) bits, SIDE;
prefix tokens always have size 1 and are not sent), and the server repeats each merged token s
times, which restores n tokens. Softmax attention over s identical copies of a key is exactly
ToMe's softmax(QK^T/sqrt(d) + log s), and identical copies stay identical through token-wise
layers, so this is proportional attention with the server's unmodified blocks (at the server's
full n-token compute; the saving is bandwidth). With `proportional=false` nothing is sent but the
N×k×d tokens, and the server runs on k tokens (plain attention, like `tokenprune`).

Wire: `sizes` as above (proportional only); the merged tokens are `rest` (float32 by default).
Analytic: ceil8(N·(k-p)·ceil(log2(n-p))) [proportional] + the terminal's size for N×k×d values.
Backward: autograd through the size-weighted averages (and the server's repeat, which sums the
copies' gradients): each merged token's gradient reaches its members weighted s_i / s.
Eval (`compressed`): the same merging. Deviation: ToMe matches on the attention keys of the block
it merges in; at the cut the client hands over only the block output, so the similarity is the
cosine of the activations themselves (the paper's ablation lists X as a slightly weaker choice).
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, Decoded, Fields, Method, register_method
from adcbench.core.params import Param
from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field, bits_for, packed_nbytes

_EPS = 1e-9  # floor(0.1 * 130) must be 13, not 12.999...


def bipartite_round(x: torch.Tensor, size: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of bipartite soft matching on patch tokens x (N×m×d) with sizes (N×m):
    merges r tokens of A = even positions into B = odd positions; returns m - r tokens."""
    N, m, d = x.shape
    metric = torch.nn.functional.normalize(x.detach().float(), dim=-1)
    a, b = metric[:, ::2], metric[:, 1::2]
    best, dst = (a @ b.transpose(1, 2)).max(dim=-1)  # N×|A|: each A token's best B partner
    order = best.argsort(dim=-1, descending=True, stable=True)  # stable: ties never change the bytes
    src_idx, keep_idx = order[:, :r], order[:, r:]
    dst_idx = dst.gather(1, src_idx)
    xa, xb = x[:, ::2] * size[:, ::2, None], x[:, 1::2] * size[:, 1::2, None]  # size-weighted sums
    sa, sb = size[:, ::2], size[:, 1::2]
    xb = xb.scatter_add(1, dst_idx[..., None].expand(-1, -1, d), xa.gather(1, src_idx[..., None].expand(-1, -1, d)))
    sb = sb.scatter_add(1, dst_idx, sa.gather(1, src_idx))
    xa_keep = xa.gather(1, keep_idx[..., None].expand(-1, -1, d))
    sa_keep = sa.gather(1, keep_idx)
    sizes = torch.cat([sa_keep, sb], dim=1)
    return torch.cat([xa_keep, xb], dim=1) / sizes[..., None], sizes


def merge_tokens(x: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the patch tokens x (N×m×d) down to `keep` tokens; returns (tokens, integer sizes)."""
    size = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    while x.shape[1] > keep:
        m = x.shape[1]
        x, size = bipartite_round(x, size, min(m - keep, (m + 1) // 2))
    return x, size.round().long()


@register_method("tome")
class ToMe(Method):
    description = (
        "ToMe: per-sample bipartite soft matching merges tokens at the cut (sizes sent for proportional attention)"
    )
    params = (
        Param("ratio", float, 0.25, "fraction k/n of tokens kept (CLS included)", low=0.0, high=1.0, low_open=True),
        Param("proportional", bool, True, "send merged sizes; the server repeats each token s times (= ToMe's log s)"),
    )
    eval_compressed = "same per-sample merging as training"
    deployment_policy = "compressed"
    rate_param = ("ratio", (0.5, 0.25, 0.1))
    field_categories = {"sizes": Category.SIDE}

    @property
    def prefix(self) -> int:
        return self.cut.prefix_tokens if self.cut else 1

    def tokens(self, n: int) -> int:
        return min(n, max(self.prefix + 1, math.floor(self.config["ratio"] * n + _EPS)))

    def rest_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        n, d = in_shape
        return (self.tokens(n), d)

    def output_shape(self, in_shape: tuple[int, ...], training: bool) -> tuple[int, ...]:
        return in_shape if self.config["proportional"] else self.rest_shape(in_shape, training)

    def _size_bits(self, n: int) -> int:
        return bits_for(n - self.prefix)  # s - 1 lies in [0, n - p - 1]

    # -- client ---------------------------------------------------------------------------------
    def encode_forward(self, x: torch.Tensor, ctx: Context) -> tuple[Fields, torch.Tensor]:
        N, n, _ = x.shape
        p, k = self.prefix, self.tokens(n)
        merged, sizes = merge_tokens(x[:, p:], k - p)
        ctx.stats.update({"tome.k": k, "tome.max_size": int(sizes.max())})
        fields: Fields = {}
        if self.config["proportional"]:
            fields["sizes"] = Field.packed((sizes - 1).to(torch.int32), self._size_bits(n), Category.SIDE)
        return fields, torch.cat([x[:, :p], merged], dim=1)

    # -- server ---------------------------------------------------------------------------------
    def decode_forward(self, fields: Decoded, rest: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        assert rest is not None and self.cut is not None
        if not self.config["proportional"]:
            if fields:
                raise WireFormatError("tome: proportional=false sends no fields of its own")
            return rest
        N, k, d = rest.shape
        n, p = self.cut.tokens, self.prefix
        sizes = fields.get("sizes")
        if not isinstance(sizes, torch.Tensor) or len(fields) != 1 or tuple(sizes.shape) != (N, k - p):
            raise WireFormatError(f"tome: expected exactly the field sizes of shape {(N, k - p)}")
        sizes = sizes.long() + 1
        if bool((sizes.sum(1) != n - p).any()):
            raise WireFormatError(f"tome: merged sizes of each sample must add up to its {n - p} patch tokens")
        counts = torch.cat([torch.ones(N, p, dtype=torch.long, device=sizes.device), sizes], dim=1)
        return rest.reshape(N * k, d).repeat_interleave(counts.flatten(), dim=0).reshape(N, n, d)

    # -- analytic size --------------------------------------------------------------------------
    def analytic_forward(self, batch: int, in_shape: tuple[int, ...], training: bool) -> tuple[int, int]:
        if not self.config["proportional"]:
            return 0, batch
        n = in_shape[0]
        return packed_nbytes(batch * (self.tokens(n) - self.prefix), self._size_bits(n)), batch
