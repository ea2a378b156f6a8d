"""`randtopk`: randomized top-k sparsification (Zheng et al., 2023, arXiv 2305.18469).

Per sample, k = max(1, round(ratio·n·d)) positions are drawn without replacement: probability
mass 1 - alpha is spread uniformly over the top-k magnitudes and alpha uniformly over the other
D - k positions (alpha = 0.1, the value the paper's code hard-codes). Sampling uses the Gumbel
top-k trick (top-k of log w + Gumbel noise is a draw without replacement proportional to w) with
the client's seeded generator, so the same seed gives the same bytes.

Wire format, analytic size and backward are exactly `topk`'s (this class only overrides the
selection). Eval (`compressed`): plain top-k, without randomization -- the randomization is a
training-time regularizer, and deterministic evaluation does not depend on the generator state.
"""

from __future__ import annotations

import math

import torch

from adcbench.method import Context, register_method
from adcbench.methods.topk import TopK
from adcbench.params import Param


@register_method("randtopk")
class RandTopK(TopK):
    description = "randomized top-k: 1-alpha of the sampling mass on the top-k set, alpha on the rest; topk's wire format"
    params = (*TopK.params, Param("alpha", float, 0.1, "sampling mass outside the top-k set", low=0.0, high=1.0))
    eval_compressed = "plain (deterministic) top-k per sample, same wire format"

    def select(self, flat: torch.Tensor, k: int, ctx: Context) -> torch.Tensor:
        N, D = flat.shape
        alpha = self.config["alpha"]
        if not ctx.training or k == D or alpha == 0.0:
            return super().select(flat, k, ctx)
        top = super().select(flat, k, ctx)
        # log-weights: log((1-alpha)/k) on the top-k set, log(alpha/(D-k)) elsewhere
        logw = torch.full((N, D), math.log(alpha / (D - k)) if alpha > 0 else -math.inf)
        logw.scatter_(1, top, math.log((1 - alpha) / k) if alpha < 1 else -math.inf)
        u = torch.rand(N, D, generator=ctx.generator).clamp_(min=1e-12)
        return (logw - torch.log(-torch.log(u))).topk(k, dim=1, sorted=False).indices
