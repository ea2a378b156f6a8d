"""Rates: a pipeline's analytic bytes per step, and mapping a generic `xi=` (the target wire ratio
against `none`) to the nearest native setting of a method's rate knob."""

from __future__ import annotations

import math
from typing import Any

import torch

from adcbench.core.method import Cut, Method, label_nbytes
from adcbench.core.params import Param
from adcbench.errors import ParamError


def analytic_step_bytes(
    stages: list[Method], cut: Cut, batch: int, training: bool = True, labels: bool = True
) -> tuple[int, int]:
    """(forward, backward) bytes of one step through `stages` from their formulas (no framing)."""
    shape: tuple[int, ...] = (cut.tokens, cut.dim)
    fwd = bwd = 0
    n = batch
    labels_by_stage = False
    for s in stages:
        nbytes, next_n = s.analytic_forward(n, shape, training)
        fwd += nbytes
        labels_by_stage |= s.sends_labels(training)
        if s.terminal:
            bwd = s.analytic_backward(n, shape) if training else 0
            break
        shape, n = s.rest_shape(shape, training), next_n
    if labels and not labels_by_stage:
        fwd += label_nbytes(batch, cut.num_classes)
    return fwd, bwd


def _candidates(p: Param) -> list[Any]:
    """Native values a generic xi may map to: the choices, every integer in range (up to 4096),
    or a fine geometric grid of floats."""
    if p.choices is not None:
        return list(p.choices)
    lo = p.low if p.low is not None else 0
    if p.type is int:
        first = int(lo) + (1 if p.low_open or lo < 1 else 0)
        return list(range(max(first, 1), int(min(p.high if p.high is not None else 4096, 4096)) + 1))
    hi = p.high if p.high is not None else 1.0
    lo = max(lo, hi * 1e-5)
    grid = [lo * (hi / lo) ** (i / 999) for i in range(1000)]
    return [v for v in grid if not (p.low_open and v <= (p.low or 0))]


def map_xi(stages: list[Method], i: int, cut: Cut, none_stages: list[Method]) -> Method:
    """The native setting of stage `i` (built with a generic `xi=`) whose whole-pipeline wire
    ratio against `none` (analytic bytes, both directions, at the cut) is nearest the target in
    log scale; settings the cut rejects (e.g. c3sl's R not dividing the batch) are skipped."""
    stage = stages[i]
    target, cls, given = stage.target_xi, type(stage), stage.given or {}
    assert target is not None
    knob = next(p for p in cls.params if p.name == cls.rate_param[0])  # type: ignore[index]
    base = sum(analytic_step_bytes(none_stages, cut, cut.batch_size))

    def achieved(value: Any) -> float | None:
        try:
            cand = cls(**{**given, knob.name: value})
        except ParamError:
            return None
        cand.cut = cut  # the analytic sizes read only the cut, never trained state
        return sum(analytic_step_bytes([*stages[:i], cand, *stages[i + 1 :]], cut, cut.batch_size)) / base

    scored: list[tuple[float, int, Any, float]] = []
    for value in _candidates(knob):
        a = achieved(value)
        if a is not None:
            scored.append((abs(math.log(a / target)), len(scored), value, a))
    shape: tuple[int, ...] = (cut.tokens, cut.dim)
    for s in stages[:i]:
        shape = s.rest_shape(shape, True)
    for _, _, value, a in sorted(scored):
        if knob.type is float:  # the shortest value with the same bytes: ratio=0.04, not 0.0420362
            value = next(r for r in (float(f"{value:.{k}g}") for k in (1, 2, 3, 4, 17)) if achieved(r) == a)
        chosen = cls(**{**given, knob.name: value})
        try:
            with torch.random.fork_rng(devices=[]):  # a trial setup must not move the run's RNG
                chosen.setup(cut, shape)
        except ParamError:
            continue
        chosen.target_xi, chosen.given = target, given
        return chosen
    raise ParamError(f"{cls.registry_name}: no {knob.name} setting reaches xi={target:g} at this cut")
