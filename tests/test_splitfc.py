"""splitfc's own rules (the registry-wide contract tests cover bytes, decoding and gradients):
the bit allocation's closed form and budget, the std-driven dropout, the dropped gradients."""

from __future__ import annotations

import torch
from _harness import one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import Context, Cut
from adcbench.methods.splitfc import SplitFC, allocate_bits, pack_codes, unpack_codes

CUT = Cut(tokens=5, dim=8, num_classes=10, batch_size=16)


def test_allocation_meets_the_budget_and_follows_the_range() -> None:
    ranges = torch.tensor([0.0, 1.0, 2.0, 4.0, 8.0, 1e6])
    for budget in (1, 7, 20, 40, 96):
        b = allocate_bits(ranges, budget)
        assert int(b.sum()) == budget and int(b.min()) >= 0 and int(b.max()) <= 16
        assert bool((b.diff() >= 0).all()), f"wider ranges get at least as many bits: {b.tolist()}"
    assert int(allocate_bits(ranges, 20)[0]) == 0  # a constant column costs nothing
    # the closed form: one step size, so doubling the range adds one bit (away from the clamps)
    assert allocate_bits(ranges, 42).tolist() == [0, 5, 6, 7, 8, 16]


def test_codes_round_trip_at_mixed_widths() -> None:
    widths = torch.tensor([0, 1, 3, 16, 5])
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, 1 << int(w), (7,), generator=g) for w in widths], dim=1)
    stream = pack_codes(codes, widths)
    assert stream.numel() == 7 * int(widths.sum())
    assert torch.equal(unpack_codes(stream, widths, 7).long(), codes)


def _stage(**params: object) -> SplitFC:
    s = SplitFC(**params)
    s.setup(CUT, (CUT.tokens, CUT.dim))
    return s


def test_dropout_follows_the_dispersion_and_drops_the_gradient() -> None:
    x = torch.randn(16, 5, 8, generator=torch.Generator().manual_seed(1))
    x[:, :, :4] *= 1e-4  # half the channels barely move across the batch
    s = _stage(keep=0.5, feature="channel", bits=8.0)
    ctx = Context(True, CUT, 0, torch.Generator().manual_seed(2))
    fields, _ = s.encode_forward(x, ctx)
    assert s._client_kept is not None and s._client_kept.tolist() == [4, 5, 6, 7], "sampled ∝ std"
    decoded = {k: f.value for k, f in fields.items()}
    y = s.decode_forward(decoded, None, ctx)
    assert torch.equal(y[..., :4], torch.zeros_like(y[..., :4]))  # dropped features are zero
    step = (x[..., 4:].amax((0, 1)) - x[..., 4:].amin((0, 1))) / 255
    assert bool(((y[..., 4:] - x[..., 4:]).abs() <= step / 2 + 1e-6).all())
    g = torch.randn_like(x)
    back = s.decode_backward({k: f.value for k, f in s.encode_backward(g, ctx).items()}, ctx)
    assert torch.equal(back[..., :4], torch.zeros_like(back[..., :4])), "chain rule: dropped columns get no gradient"
    assert float((back[..., 4:] - g[..., 4:]).abs().max()) < 0.05


def test_eval_keeps_the_most_dispersed_columns() -> None:
    x = torch.tensor([-1.5, -0.5, 0.5, 1.5]).reshape(4, 1, 1) * torch.arange(1, 41.0).reshape(1, 5, 8)  # std ∝ j
    s = _stage(keep=0.1)
    fields, _ = s.encode_forward(x, Context(False, CUT))
    kept = s._read_support({k: f.value for k, f in fields.items()}, 40)
    assert kept.tolist() == [36, 37, 38, 39] and s._client_kept is None  # eval leaves training state alone
