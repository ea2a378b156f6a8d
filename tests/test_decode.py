"""Decode fidelity: what the server computes on, against what the client had.

Identity and lossless chains decode bit-exactly; each lossy stage holds the error bound it
documents (quantization: half a step of its scale group; float16: its rounding; top-k: exact on
the top-k support, zero elsewhere). The top-k decoder rejects supports that are not strictly
increasing (unsorted or duplicated positions would scatter values onto the wrong coordinates)."""

from __future__ import annotations

import pytest
import torch
from _harness import make, one_thread, sent_and_decoded  # noqa: F401 (module-wide fixture)

from adcbench.errors import WireFormatError
from adcbench.wire import Field, Kind, Message


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


def _support_field(msg: Message) -> str:
    packed = [n for n, f in msg.fields.items() if f.kind == Kind.PACKED and f.value.dim() == 2]
    assert len(packed) == 1, f"expected one packed support field in {sorted(msg.fields)}"
    return packed[0]


@pytest.mark.parametrize("defect", ["swap", "duplicate", "reverse"])
def test_topk_rejects_unsorted_or_duplicated_indices(defect: str) -> None:
    h = make("topk:ratio=0.05")  # k=27 of 544 per sample: packed indices are cheaper than a bitmap
    x, y = h.batch()
    msg = h.pipeline.unpack(h.client.forward(x, y, 0))
    name = _support_field(msg)
    f = msg.fields[name]
    idx = f.value.clone()
    if defect == "swap":
        idx[3, [4, 5]] = idx[3, [5, 4]]
    elif defect == "duplicate":
        idx[0, 1] = idx[0, 0]
    else:
        idx = idx.flip(1)
    fields = dict(msg.fields)
    fields[name] = Field(f.kind, f.category, idx, f.bits)
    with pytest.raises(WireFormatError):
        h.server.train_step(h.pipeline.pack(Message(fields)), 0)


@pytest.mark.parametrize(("granularity", "groups"), [("tensor", ()), ("sample", (16,)), ("token", (16, 17))])
def test_quant_sends_one_scale_pair_per_group(granularity: str, groups: tuple[int, ...]) -> None:
    h = make(f"quant:bits=4,granularity={granularity}")
    x, y = h.batch()
    msg = h.pipeline.unpack(h.client.forward(x, y, 0))
    assert tuple(msg["0.scale"].shape) == (*groups, 2)
