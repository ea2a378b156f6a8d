"""`randtopk`: randomized top-k sparsification (Zheng et al., 2023, arXiv 2305.18469).

Per sample, k = max(1, round(ratio·n·d)) positions are drawn without replacement: probability
mass 1 - alpha is spread uniformly over the top-k magnitudes and alpha uniformly over the other
D - k positions (alpha = 0.1, the value the paper's code hard-codes). Sampling uses the
Efraimidis-Spirakis keys (the k largest log(u)/w are a draw without replacement proportional to
w) with the client's seeded generator, so the same seed gives the same bytes.

Wire format, analytic size and backward are exactly `topk`'s (this class only overrides the
selection). Eval (`compressed`): plain top-k, without randomization -- the randomization is a
training-time regularizer, and deterministic evaluation does not depend on the generator state.
"""

from __future__ import annotations

import math

import torch

from adcbench.core.method import Context, register_method
from adcbench.core.params import Param
from adcbench.methods.topk import TopK


@register_method("randtopk")
class RandTopK(TopK):
    description = (
        "randomized top-k: 1-alpha of the sampling mass on the top-k set, alpha on the rest; topk's wire format"
    )
    params = (*TopK.params, Param("alpha", float, 0.1, "sampling mass outside the top-k set", low=0.0, high=1.0))
    eval_compressed = "plain (deterministic) top-k per sample, same wire format"
    deployment_policy = "raw"  # the paper code switches compression off in eval()

    def select(self, flat: torch.Tensor, k: int, ctx: Context) -> torch.Tensor:
        N, D = flat.shape
        alpha = self.config["alpha"]
        top = super().select(flat, k, ctx)
        if not ctx.training or k == D or alpha == 0.0:
            return top
        # Efraimidis-Spirakis: the k largest log(u)/w are a draw without replacement with
        # probabilities proportional to w; w = (1-alpha)/k on the top-k set, alpha/(D-k) elsewhere.
        # One log over D values (cheaper than Gumbel's two); w_rest > 0 here.
        w_top, w_rest = (1 - alpha) / k, alpha / (D - k)
        # Drawn on the CPU generator (the same draw on every device), then moved to the activations.
        keys = torch.rand(N, D, generator=ctx.generator).to(flat.device).clamp_(min=1e-30).log_().mul_(1 / w_rest)
        if w_top > 0:
            top_keys = keys.gather(1, top).mul_(w_rest / w_top)
        else:  # alpha = 1: no mass on the top-k set, it is drawn only if the rest runs out
            top_keys = torch.full((N, k), -math.inf, device=flat.device)
        keys.scatter_(1, top, top_keys)
        return keys.topk(k, dim=1, sorted=False).indices
