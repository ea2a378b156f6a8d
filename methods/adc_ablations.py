"""ADC ablations as registered presets: each keeps one of ADC's two compressions.

- `adc-batch`: batch merging only -- T = max(2, floor(xi·B)) K-means clusters of whole n×d
  activations (token rate 1, every token kept). Eval (`compressed`): ADC's eval keeps k = n
  tokens per sample, i.e. the identity.
- `adc-token`: token selection only -- batch rate 1, so T = B and no K-means runs (each sample
  is its own cluster); k = max(1, floor(xi·n)) tokens per sample, CLS included. This equals
  `tokenprune:ratio=xi` except for the labels, which follow ADC's `labels` setting.

Both are thin subclasses of `adc` with the rate split fixed; equivalent recipes with the full
method: `adc:batch_rate=X,token_rate=1` and `adc:batch_rate=1,token_rate=X`. Wire format,
analytic size, backward and labels are ADC's (methods/adc.py, docs/methods.md).
"""

from __future__ import annotations

from adcbench.core.method import Method, register_method
from adcbench.methods.adc import ADC

_FIXED = ("rule", "batch_rate", "token_rate")
_SHARED = tuple(p for p in ADC.params if p.name not in _FIXED)


@register_method("adc-batch")
class ADCBatchOnly(ADC):
    description = "ADC ablation: K-means batch merging only (all tokens kept); T/B = xi"
    params = _SHARED
    eval_compressed = "identity (no merging at eval, and every token is kept)"
    rate_param = ("xi", (0.5, 0.25, 0.125))
    select_rows = Method.select_rows  # every token is sent: no rows to skip

    def rates(self) -> tuple[float, float]:
        return self.config["xi"], 1.0


@register_method("adc-token")
class ADCTokenOnly(ADC):
    description = "ADC ablation: attention token selection only (no merging, no K-means); k/n = xi"
    params = _SHARED
    eval_compressed = "per-sample token selection (CLS + own top-(k-1) tokens), as in training"
    same_as = "tokenprune:ratio=XI (the same token selection; adc-token also sends cluster ids)"
    rate_param = ("xi", (0.5, 0.25, 0.1))

    def rates(self) -> tuple[float, float]:
        return 1.0, self.config["xi"]
