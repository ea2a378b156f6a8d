"""Split a timm VisionTransformer into a client half and a server half.

Client: patch embedding, CLS/register tokens + positional embedding, patch dropout, pre-norm and
blocks [0, l). Server: blocks [l, L), final norm, pooling, fc-norm, head. The two halves share no
parameters, so each side has its own optimizer, as in real split learning.

ADC and token pruning need the last client block's attention: the CLS query row, softmax over all
n keys (CLS included), averaged over heads. A forward hook on that block's `qkv` projection reuses
the q and k the block computes anyway (only the 1×n CLS row is extra) and is installed only for
methods that ask for it, so the blocks of other methods run untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from adcbench.errors import AdcbenchError


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

    def _capture(self, attn: nn.Module):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            with torch.no_grad():
                B, N, _ = out.shape
                qkv = out.detach().reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
                q, k = attn.q_norm(qkv[0][:, :, :1]), attn.k_norm(qkv[1])  # CLS query; all keys
                scores = (q * attn.scale) @ k.transpose(-2, -1)  # B×H×1×N
                self._scores = scores.softmax(dim=-1).mean(dim=1).squeeze(1)  # B×N

        return hook

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (h: B×n×d activations at the cut, CLS attention B×n or None)."""
        v = self.vit
        self._scores = None
        x = v.patch_embed(x)
        x = v._pos_embed(x)
        x = v.patch_drop(x)
        x = v.norm_pre(x)
        x = v.blocks(x)
        scores, self._scores = self._scores, None
        return x, scores


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
