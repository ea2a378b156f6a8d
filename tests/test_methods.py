"""Method-specific behaviour: what each stage computes, beyond the shared contract."""

from __future__ import annotations

import math

import pytest
import torch
from _harness import BATCH, make, one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.errors import ParamError, WireFormatError
from adcbench.wire import Field, Message, bits_for, breakdown

CUT = Cut(tokens=17, dim=32, num_classes=10, batch_size=16)


def stage(spec: str, cut: Cut = CUT):
    p = Pipeline.from_spec(spec)
    p.setup(cut)
    return p


def ctx(training: bool = True, seed: int = 0, **kw) -> Context:
    return Context(training, CUT, 0, torch.Generator().manual_seed(seed), **kw)


def through_wire(p: Pipeline, x: torch.Tensor, training: bool = True, **kw) -> tuple[torch.Tensor, bytes]:
    c = ctx(training, **kw)
    msg, _ = p.encode_forward(x, c)
    data = p.pack(msg)
    out, _, _ = p.decode_forward(p.unpack(data), ctx(training))
    return out.detach(), data


# --------------------------------------------------------------------------------------------
# quant
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity,scales", [("tensor", 1), ("sample", 4), ("token", 4 * 17)])
@pytest.mark.parametrize("bits", [1, 3, 8, 16])
def test_quant_error_within_half_step(granularity: str, scales: int, bits: int) -> None:
    p = stage(f"quant:bits={bits},granularity={granularity}")
    x = torch.randn(4, 17, 32) * torch.linspace(0.1, 10, 4)[:, None, None]
    out, data = through_wire(p, x)
    rows = x.reshape(scales, -1)
    step = (rows.max(1).values - rows.min(1).values) / (2**bits - 1)
    err = (out.detach() - x).abs().reshape(scales, -1).max(1).values
    fp32 = 4 * torch.finfo(torch.float32).eps * rows.abs().max(1).values  # lo + code*step in float32
    assert (err <= step / 2 + fp32).all()
    b = breakdown(data)
    assert b["payload"] == math.ceil(x.numel() * bits / 8) and b["side"] == 8 * scales


def test_quant_stochastic_rounding_is_unbiased_and_seeded() -> None:
    p = stage("quant:bits=2,rounding=stochastic,granularity=tensor")
    x = torch.rand(64, 17, 32)
    x[0, 0, 0], x[0, 0, 1] = 0.0, 1.0  # fix min and max: steps of 1/3
    out_a, data_a = through_wire(p, x, seed=1)
    _, data_b = through_wire(p, x, seed=1)
    _, data_c = through_wire(p, x, seed=2)
    assert data_a == data_b and data_a != data_c
    assert abs(float((out_a - x).mean())) < 0.01  # nearest rounding would not be unbiased per value
    assert float((out_a - x).abs().max()) < 1 / 3 + 1e-5


def test_quant_gradient_uses_grad_bits() -> None:
    small = make("quant:bits=8,grad_bits=2").step()[1]
    large = make("quant:bits=8").step()[1]
    assert breakdown(small)["payload"] * 4 == breakdown(large)["payload"]


def test_quant_constant_input_is_exact() -> None:
    out, _ = through_wire(stage("quant:bits=1"), torch.full((2, 17, 32), 3.5))
    assert torch.equal(out, torch.full((2, 17, 32), 3.5))


def test_quant_rejects_codes_wider_than_bits() -> None:
    p = stage("quant:bits=2")
    msg, _ = p.encode_forward(torch.randn(2, 17, 32), ctx())
    msg.fields["0.codes"] = Field.packed(torch.full((2, 17, 32), 5), 3)
    with pytest.raises(WireFormatError):
        p.decode_forward(p.unpack(p.pack(msg)), ctx())


# --------------------------------------------------------------------------------------------
# topk / randtopk
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio,field", [(0.001, "idx"), (0.05, "gaps"), (0.2, "gaps"), (0.5, None), (0.8, "gaps")])
def test_topk_keeps_largest_magnitudes_and_picks_cheapest_support(ratio: float, field: str) -> None:
    from adcbench.wire import gap_code_nbytes

    p = stage(f"topk:ratio={ratio}")
    x = torch.randn(4, 17, 32)
    out, data = through_wire(p, x)
    D = 17 * 32
    k = max(1, round(ratio * D))
    flat, rec = x.reshape(4, -1), out.reshape(4, -1)
    thresh = flat.abs().topk(k, dim=1).values[:, -1:]
    assert torch.equal(rec, torch.where(flat.abs() >= thresh, flat, torch.zeros(())))
    msg = Message.decode(data)
    assert field is None or f"0.{field}" in msg  # at k = D/2 bitmap and gap code are within a byte
    keep = flat.abs() >= thresh
    coded = keep if k <= D - k else ~keep  # the gap code carries the smaller of the two sets
    pos = coded.nonzero()[:, 1].reshape(4, -1).numpy()
    sizes = {"mask": math.ceil(4 * D / 8), "idx": math.ceil(4 * k * bits_for(D) / 8), "gaps": gap_code_nbytes(pos, D)}
    assert breakdown(data)["side"] == min(sizes.values())
    assert sizes[next(n for n in msg)[2:]] == min(sizes.values())


def test_topk_gradient_only_on_support_and_values_only() -> None:
    h = make("topk:ratio=0.05")
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    carrier = h.client._carrier
    bwd, _ = h.server.train_step(fwd, 0)
    k = round(0.05 * 17 * 32)
    assert carrier.shape == (BATCH, k)  # the gradient message is the values' gradient: N×k
    assert breakdown(bwd)["side"] == 0 and breakdown(bwd)["payload"] == 4 * BATCH * k


def _bad_supports(N: int, D: int, k: int) -> dict[str, tuple[str, Field]]:
    """Crafted supports, each well-formed on the wire but not a valid set of k positions per row."""
    from adcbench.wire import gap_encode

    good = torch.arange(k).expand(N, k).clone()
    out_of_range, unsorted, duplicate = good.clone(), good.clone(), good.clone()
    out_of_range[:, -1] = D + 5
    unsorted[:, [0, 1]] = unsorted[:, [1, 0]]
    duplicate[:, 1] = duplicate[:, 0]
    mask = torch.zeros(N, D, dtype=torch.uint8)
    mask[:, : k + 1] = 1  # one too many per row
    beyond = good.numpy().copy()
    beyond[:, -1] = D  # the gap code of a set whose last position is D
    return {
        "idx out of range": ("idx", Field.packed(out_of_range, bits_for(D) + 1)),
        "idx unsorted": ("idx", Field.packed(unsorted, bits_for(D))),
        "idx duplicate": ("idx", Field.packed(duplicate, bits_for(D))),
        "idx wrong count": ("idx", Field.packed(good[:, :-1], bits_for(D))),
        "mask wrong count": ("mask", Field.packed(mask, 1)),
        "mask not bits": ("mask", Field.packed(mask * 2, 2)),
        "gaps beyond D": ("gaps", Field.raw(gap_encode(beyond, D))),
        "gaps truncated": ("gaps", Field.raw(gap_encode(good.numpy(), D)[:-1])),
        "gaps as a tensor": ("gaps", Field.packed(good, bits_for(D))),
        "two supports": ("mask", Field.packed(torch.zeros(N, D, dtype=torch.uint8), 1)),
    }


@pytest.mark.parametrize("case", list(_bad_supports(2, 17 * 32, 27)))
def test_topk_rejects_every_invalid_support(case: str) -> None:
    p = stage("topk:ratio=0.05")
    msg, _ = p.encode_forward(torch.randn(2, 17, 32), ctx())
    D, k = 17 * 32, 27
    assert "0.gaps" in msg
    name, field = _bad_supports(2, D, k)[case]
    fields = {key: f for key, f in msg.fields.items() if key != "0.gaps" or case == "two supports"}
    fields[f"0.{name}"] = field
    with pytest.raises(WireFormatError):
        p.decode_forward(p.unpack(p.pack(Message(fields))), ctx())


def test_randtopk_samples_outside_topk_only_in_training() -> None:
    x = torch.randn(8, 17, 32)
    topk, _ = through_wire(stage("topk:ratio=0.1"), x)
    zero_alpha, _ = through_wire(stage("randtopk:ratio=0.1,alpha=0"), x)
    assert torch.equal(topk, zero_alpha)
    rand, _ = through_wire(stage("randtopk:ratio=0.1,alpha=0.5"), x)
    other, _ = through_wire(stage("randtopk:ratio=0.1,alpha=0.5"), x, seed=7)
    assert not torch.equal(rand, topk) and not torch.equal(rand, other)
    outside = ((rand != 0) & (topk == 0)).sum(dim=(1, 2)).float()
    k = round(0.1 * 17 * 32)
    assert 0.3 * k < float(outside.mean()) < 0.7 * k  # about alpha of the draws land outside
    evaluated, _ = through_wire(stage("randtopk:ratio=0.1,alpha=0.5"), x, training=False)
    assert torch.equal(evaluated, topk)


# --------------------------------------------------------------------------------------------
# bottleneck
# --------------------------------------------------------------------------------------------
def test_bottleneck_shapes_and_decoder_activation() -> None:
    p = stage("bottleneck:ratio=0.25,depth=3,hidden=20")
    enc, dec = p.stages[0].client_module, p.stages[0].server_module
    assert [m.out_features for m in enc if isinstance(m, torch.nn.Linear)] == [20, 20, 8]
    assert [m.out_features for m in dec if isinstance(m, torch.nn.Linear)] == [20, 20, 32]
    out, data = through_wire(p, torch.randn(3, 17, 32))
    assert breakdown(data)["payload"] == 4 * 3 * 17 * 8
    assert float(out.min()) < 0  # identity output: the residual stream can be negative
    out_relu, _ = through_wire(stage("bottleneck:ratio=0.25,decoder_act=relu"), torch.randn(3, 17, 32))
    assert float(out_relu.min()) >= 0  # the authors' variant


def test_bottleneck_default_hidden_is_midpoint() -> None:
    p = stage("bottleneck:ratio=0.05", Cut(197, 192, 10, 128))
    widths = [m.out_features for m in p.stages[0].client_module if isinstance(m, torch.nn.Linear)]
    assert widths == [101, 10]  # 192 -> 101 -> 10, as in the authors' code


# --------------------------------------------------------------------------------------------
# c3sl
# --------------------------------------------------------------------------------------------
def test_c3sl_requires_batch_multiple_of_r() -> None:
    with pytest.raises(ParamError, match="multiple"):
        stage("c3sl:R=3")


def test_c3sl_recovers_members_and_pads_eval_batches() -> None:
    p = stage("c3sl:R=2")
    x = torch.randn(16, 17, 32)
    out, data = through_wire(p, x)
    assert breakdown(data)["payload"] == 4 * 8 * 17 * 32
    cos = torch.nn.functional.cosine_similarity(out.reshape(16, -1), x.reshape(16, -1), dim=1)
    assert float(cos.min()) > 0.3  # holographic unbinding: the member plus crosstalk noise
    wrong = torch.nn.functional.cosine_similarity(out.reshape(16, -1), x.roll(1, 0).reshape(16, -1), dim=1)
    assert float(wrong.abs().max()) < 0.2
    out13, data13 = through_wire(p, x[:13], training=False)
    assert out13.shape[0] == 13 and "0.count" in Message.decode(data13)
    assert torch.allclose(out13[:12], out[:12], atol=1e-5)  # zero padding adds no crosstalk


def test_c3sl_keys_come_from_the_shared_seed() -> None:
    x = torch.randn(16, 17, 32)
    _, a = through_wire(stage("c3sl:R=4,seed=1"), x)
    _, b = through_wire(stage("c3sl:R=4,seed=1"), x)
    _, c = through_wire(stage("c3sl:R=4,seed=2"), x)
    assert a == b and a != c


# --------------------------------------------------------------------------------------------
# tokenprune and ADC presets
# --------------------------------------------------------------------------------------------
def test_tokenprune_keeps_cls_and_top_attention_tokens() -> None:
    p = stage("tokenprune:ratio=0.25")
    x = torch.randn(2, 17, 32)
    att = torch.rand(2, 17)
    out, data = through_wire(p, x, attention=att)
    k = 4
    top = att[:, 1:].topk(k - 1, dim=1).indices.sort(dim=1).values + 1
    expect = torch.cat([x[:, :1], x.gather(1, top.unsqueeze(-1).expand(-1, -1, 32))], dim=1)
    assert torch.equal(out, expect)
    assert breakdown(data)["side"] == 0  # positions are not sent


def test_server_output_does_not_depend_on_token_order() -> None:
    h = make("tokenprune:ratio=0.5")
    h.server.net.eval()
    z = torch.randn(3, 8, 32)
    perm = torch.cat(
        [torch.zeros(1, dtype=torch.long), torch.randperm(7, generator=torch.Generator().manual_seed(0)) + 1]
    )
    with torch.no_grad():
        a, b = h.server.net(z), h.server.net(z[:, perm])
    assert torch.allclose(a, b, atol=1e-5)


def test_adc_presets_fix_one_factor() -> None:
    h = make("adc-token:xi=0.25")
    h.step()
    assert h.client.stats["adc.T"] == BATCH and h.client.stats["adc.k"] == 4
    h = make("adc-batch:xi=0.25")
    h.step()
    assert h.client.stats["adc.T"] == 4 and h.client.stats["adc.k"] == 17


def test_adc_presets_equal_their_recipes() -> None:
    for preset, recipe in (
        ("adc-token:xi=0.25", "adc:batch_rate=1,token_rate=0.25"),
        ("adc-batch:xi=0.25", "adc:batch_rate=0.25,token_rate=1"),
    ):
        assert make(preset).step()[:2] == make(recipe).step()[:2]


# --------------------------------------------------------------------------------------------
# nominal ratios (the paper's code accounting, --budget-accounting nominal)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec,xi",
    [
        ("topk:ratio=0.1", 0.1 * 1.359375),  # 23-bit indices at B·n·d = 128·197·192: xi = 1.359 r
        ("randtopk:ratio=0.01", 0.01 * 1.359375),
        ("quant:bits=8", 0.25),
        ("quant:bits=8,grad_bits=4", 0.1875),
        ("bottleneck:ratio=0.05", 0.05),
        ("c3sl:R=8", 0.125),
        ("adc-token:xi=0.1", 0.1),
        ("tokenprune", None),  # not in the paper: no nominal charge
    ],
)
def test_nominal_ratio_is_the_papers_charge(spec: str, xi: float | None) -> None:
    p = Pipeline.from_spec(spec)
    p.setup(Cut(197, 192, 100, 128))
    got = p.nominal_ratio()
    assert got == xi if xi is None else got == pytest.approx(xi)
