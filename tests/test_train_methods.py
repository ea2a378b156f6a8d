"""Every registered method trains end to end on the offline digits task (a few steps)."""

from __future__ import annotations

import pytest
from _harness import one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import METHODS
from adcbench.core.pipeline import LosslessStage, Pipeline
from adcbench.train import RunConfig, run

SPECS = [f"quant:bits=4+{n}" if issubclass(METHODS.get(n), LosslessStage) else n for n in METHODS.names()]
SPECS += ["adc:xi=0.1+quant:bits=8", "bottleneck:ratio=0.1+quant:bits=4", "topk:ratio=0.1+quant:bits=8+zstd"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_trains_on_digits(spec: str) -> None:
    rec = run(RunConfig(method=spec, task="digits", max_steps=5, epochs=1, eval_every=5, out=None, progress=False))
    assert rec["status"] == "completed" and rec["steps"] == 5
    fwd, bwd = rec["analytic_bytes_per_step"]["fwd"], rec["analytic_bytes_per_step"]["bwd"]
    exact = Pipeline.from_spec(spec).exact_size  # else analytic is a bound (entropy-coded positions)
    for parts, per_step in ((rec["bytes"]["breakdown_fwd"], fwd), (rec["bytes"]["breakdown_bwd"], bwd)):
        info = parts["payload"] + parts["side"] + parts["labels"]
        assert info == 5 * per_step if exact else info <= 5 * per_step
    final, n_test = rec["final"], 359  # digits' fixed test split; accuracies count whole samples of it
    for key in ("acc", "acc_compressed"):
        assert abs(final[key] * n_test - round(final[key] * n_test)) < 1e-9, key
    assert rec["eval_split"] == "test" and rec["stopped_by"] == "max_steps"
