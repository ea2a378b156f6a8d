"""Decode fidelity: what the server computes on, against what the client had.

Identity and lossless chains decode bit-exactly; each lossy stage holds the error bound it
documents (quantization: half a step of its scale group; float16: its rounding; top-k: exact on
the top-k support, zero elsewhere). The top-k decoder rejects supports that are not strictly
increasing (unsorted or duplicated positions would scatter values onto the wrong coordinates)."""

from __future__ import annotations

import pytest
import torch
from _harness import make, one_thread, sent_and_decoded  # noqa: F401 (module-wide fixture)


@pytest.mark.parametrize("spec", ["none", "float", "none+zstd", "float+zlib:level=9", "none+zlib+zstd"])
def test_identity_and_lossless_chains_decode_bit_exactly(spec: str) -> None:
    sent, got = sent_and_decoded(make(spec))
    assert got.dtype == sent.dtype and torch.equal(got, sent)


@pytest.mark.parametrize("spec", ["quant:bits=8", "quant:bits=3,granularity=token", "quant:bits=5,granularity=tensor"])
def test_quant_within_half_a_step_of_its_group(spec: str) -> None:
    h = make(spec)
    sent, got = sent_and_decoded(h)
    stage = h.pipeline.stages[-1]
    rows_s, rows_g = stage._rows(sent), stage._rows(got)
    step = (rows_s.amax(1, keepdim=True) - rows_s.amin(1, keepdim=True)) / ((1 << stage.config["bits"]) - 1)
    err = (rows_g - rows_s).abs()
    assert bool((err <= step / 2 * (1 + 1e-5) + 1e-7).all())
    assert float(err.max()) > float(step.min()) / 10, "rounding actually happens"


def test_float16_within_its_rounding() -> None:
    sent, got = sent_and_decoded(make("float:dtype=float16"))
    assert torch.equal(got, sent.half().float())
    assert bool(((got - sent).abs() <= sent.abs() * 2**-11 + 2**-24).all())


@pytest.mark.parametrize("ratio", [0.05, 0.3])  # packed indices, bitmap
def test_topk_exact_on_its_support_zero_elsewhere(ratio: float) -> None:
    sent, got = sent_and_decoded(make(f"topk:ratio={ratio}"))
    flat_s, flat_g = sent.reshape(len(sent), -1), got.reshape(len(got), -1)
    k = max(1, round(ratio * flat_s.shape[1]))
    support = flat_s.abs().topk(k, dim=1).indices
    kept = torch.zeros_like(flat_s, dtype=torch.bool).scatter_(1, support, True)
    assert torch.equal(flat_g[kept], flat_s[kept]) and bool((flat_g[~kept] == 0).all())


# Unsorted, duplicated and out-of-range top-k supports in every coding (indices, bitmap, gaps):
# tests/test_methods.py::test_topk_rejects_every_invalid_support.
