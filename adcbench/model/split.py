"""Split a timm VisionTransformer into a client half and a server half.

Client: patch embedding, CLS/register tokens + positional embedding, patch dropout, pre-norm and
blocks [0, l). Server: blocks [l, L), final norm, pooling, fc-norm, head. The two halves share no
parameters, so each side has its own optimizer, as in real split learning.

ADC and token pruning need the last client block's attention: the CLS query row, softmax over all
n keys (CLS included), averaged over heads. A forward hook on that block's `qkv` projection reuses
the q and k the block computes anyway (only the 1×n CLS row is extra) and is installed only for
methods that ask for it, so the blocks of other methods run untouched.

Row skipping: a method that reads only some rows of the cut (ADC, token pruning) may pass a
`select` callback to `ClientNet.forward`. It gets the CLS attention as soon as the last client
block's qkv exists and returns the (B, m) positions it will read; the rest of that block (the
attention of those query rows over every key and value, the output projection, the MLP) then runs
on those m rows only, forward and backward -- the same computation as the full block on the rows
that reach the wire. The other rows of the returned activations are NaN, so a method that reads a
row it did not declare fails loudly instead of training on zeros. Only blocks whose every dropout
is off qualify (dropout on fewer rows would draw different random numbers); others run whole.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from adcbench.errors import AdcbenchError

# Maps the CLS attention (B×n) to the (B, m) distinct row positions a method reads, or None (all).
Select = Callable[[torch.Tensor], "torch.Tensor | None"]


class ClientNet(nn.Module):
    def __init__(self, vit: nn.Module, split: int, capture_attention: bool = False) -> None:
        super().__init__()
        self.vit = vit  # owns embeddings and the client blocks only (see split_vit)
        self.num_prefix_tokens = int(getattr(vit, "num_prefix_tokens", 1))
        self._scores: torch.Tensor | None = None
        self._hook = None
        if capture_attention:
            attn = vit.blocks[split - 1].attn
            for name in ("qkv", "num_heads", "head_dim", "scale", "q_norm", "k_norm"):
                if not hasattr(attn, name):
                    raise AdcbenchError(
                        f"block {split - 1}'s attention ({type(attn).__name__}) has no {name!r}: "
                        "attention capture supports timm's standard Attention"
                    )
            self._hook = attn.qkv.register_forward_hook(self._capture(attn))
        self.can_skip_rows = capture_attention and _plain_block(vit.blocks[split - 1])

    def _capture(self, attn: nn.Module):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            with torch.no_grad():
                B, N, _ = out.shape
                qkv = out.detach().reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
                q, k = attn.q_norm(qkv[0][:, :, :1]), attn.k_norm(qkv[1])  # CLS query; all keys
                scores = (q * attn.scale) @ k.transpose(-2, -1)  # B×H×1×N
                self._scores = scores.softmax(dim=-1).mean(dim=1).squeeze(1)  # B×N

        return hook

    def forward(self, x: torch.Tensor, select: Select | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (h: B×n×d activations at the cut, CLS attention B×n or None). With `select`
        (and a block that qualifies, `can_skip_rows`), only the selected rows of h are computed."""
        v = self.vit
        self._scores = None
        x = v.patch_embed(x)
        x = v._pos_embed(x)
        x = v.patch_drop(x)
        x = v.norm_pre(x)
        if select is None or not self.can_skip_rows:
            x = v.blocks(x)
            scores, self._scores = self._scores, None
            return x, scores
        for blk in v.blocks[:-1]:
            x = blk(x)
        return self._last_block_rows(v.blocks[-1], x, select)

    def _last_block_rows(
        self, blk: nn.Module, x: torch.Tensor, select: Select
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """timm's Block.forward + Attention.forward, with the query side restricted to the
        selected rows once the (full) qkv projection has given the CLS attention."""
        attn = blk.attn
        B, N, C = x.shape
        xn = blk.norm1(x)
        qkv = attn.qkv(xn)  # the capture hook fills self._scores from exactly this tensor
        scores, self._scores = self._scores, None
        assert scores is not None
        rows = select(scores)
        if rows is not None and rows.shape[1] == N:  # distinct positions, all of them: the full block
            rows = None
        q, k, v = qkv.reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if rows is not None:
            m = rows.shape[1]
            q = q.gather(2, rows[:, None, :, None].expand(B, attn.num_heads, m, attn.head_dim))
            at = rows[..., None].expand(B, m, C)
            x, xn = x.gather(1, at), xn.gather(1, at)
        q, k = attn.q_norm(q), attn.k_norm(k)
        if attn.fused_attn:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        o = attn.norm(o.transpose(1, 2).reshape(B, x.shape[1], attn.attn_dim))
        if attn.gate is not None:
            o = o * attn.gate(xn).sigmoid()
        y = x + blk.drop_path1(blk.ls1(attn.proj_drop(attn.proj(o))))
        y = y + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(y))))
        if rows is None:
            return y, scores
        full = torch.full((B, N, C), float("nan"), dtype=y.dtype, device=y.device)
        return full.scatter(1, rows[..., None].expand_as(y), y), scores


def _plain_block(blk: nn.Module) -> bool:
    """True when `blk` is timm's standard Block/Attention with every dropout off, the case
    `_last_block_rows` reproduces exactly."""
    from timm.layers import DropPath
    from timm.models.vision_transformer import Attention, Block

    if type(blk) is not Block or type(blk.attn) is not Attention:
        return False
    for mod in blk.modules():
        if isinstance(mod, nn.Dropout) and mod.p > 0:
            return False
        if isinstance(mod, DropPath) and mod.drop_prob > 0:
            return False
    return True


class ServerNet(nn.Module):
    def __init__(
        self,
        blocks: nn.Sequential,
        norm: nn.Module,
        fc_norm: nn.Module,
        head_drop: nn.Module,
        head: nn.Module,
        global_pool: str,
        num_prefix_tokens: int,
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise AdcbenchError(f"global_pool={global_pool!r} is not supported (use 'token' or 'avg')")
        self.blocks, self.norm, self.fc_norm, self.head_drop, self.head = blocks, norm, fc_norm, head_drop, head
        self.global_pool = global_pool
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(h))
        # Token order after pruning does not matter: positions were embedded on the client, the
        # blocks are permutation-equivariant and CLS stays first.
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(dim=1)
        return self.head(self.head_drop(self.fc_norm(x)))


def split_vit(vit: nn.Module, split: int, capture_attention: bool = False) -> tuple[ClientNet, ServerNet]:
    """Split `vit` after block `split` (1 <= split < depth). Takes ownership of `vit`."""
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(vit, VisionTransformer):
        raise AdcbenchError(f"expected a timm VisionTransformer, got {type(vit).__name__}")
    depth = len(vit.blocks)
    if not 1 <= split < depth:
        raise AdcbenchError(f"split={split} is out of range; valid: 1..{depth - 1} for a {depth}-block ViT")
    if getattr(vit, "attn_pool", None) is not None:
        raise AdcbenchError("attention-pool heads are not supported; use global_pool='token' or 'avg'")
    blocks = list(vit.blocks)
    server = ServerNet(
        nn.Sequential(*blocks[split:]),
        vit.norm,
        vit.fc_norm,
        vit.head_drop,
        vit.head,
        vit.global_pool,
        int(vit.num_prefix_tokens),
    )
    vit.blocks = nn.Sequential(*blocks[:split])
    vit.norm, vit.fc_norm, vit.head_drop, vit.head = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
    return ClientNet(vit, split, capture_attention), server


def cut_shape(client: ClientNet, image_size: int, in_chans: int) -> tuple[int, int]:
    """(n tokens, d width) at the cut, measured by one forward pass."""
    with torch.no_grad():
        was = client.training
        client.eval()
        h, _ = client(torch.zeros(1, in_chans, image_size, image_size, device=next(client.parameters()).device))
        client.train(was)
    return int(h.shape[1]), int(h.shape[2])
