"""Core behaviour the gradient/decode tests do not reach: a generic `xi=` target survives stage
building and steers the native knob, and the server's evaluation answer is the argmax class of
each sample of the batch; and what mutation testing found unpinned (row selection, the server's
seed, exact sizes, refused overflowing gradients, training mode, the stage shape check)."""

from __future__ import annotations

import pytest
import torch
from _harness import make, one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import Context, read_predictions
from adcbench.core.pipeline import Pipeline, _check_shape
from adcbench.errors import WireFormatError
from adcbench.wire import breakdown


def test_generic_xi_is_kept_and_mapped_to_the_native_knob() -> None:
    p = Pipeline.from_spec("quant:xi=0.125")
    assert p.spec == "quant:xi=0.125" and p.resolved()[0]["xi_target"] == 0.125
    h = make("quant:xi=0.125")
    assert abs(h.pipeline.achieved_xi() - 0.125) < 0.03  # bits chosen for the target, not the default
    assert make("quant").pipeline.achieved_xi() != h.pipeline.achieved_xi()
    assert "xi_target" not in Pipeline.from_spec("quant:bits=4").resolved()[0]


def test_analytic_bytes_are_the_payload_and_labels_on_the_wire() -> None:
    h = make("none")
    fwd, bwd, _ = h.step()
    a_fwd, a_bwd = h.pipeline.analytic_bytes(16)
    parts_fwd, parts_bwd = breakdown(fwd), breakdown(bwd)
    assert a_fwd == len(fwd) - parts_fwd["framing"] and a_bwd == len(bwd) - parts_bwd["framing"]
    assert a_fwd == 16 * (17 * 32 * 4) + parts_fwd["labels"]


def test_server_answers_the_argmax_class_of_each_sample() -> None:
    h = make("none")
    x, _ = h.batch(6)
    fwd = h.client.forward_eval(x, h.pipeline)
    pred = read_predictions(h.server.predict(fwd, h.pipeline), 6, h.cut.num_classes)
    with torch.no_grad():
        h.client.net.eval()
        h.server.net.eval()
        logits = h.server.net(h.client.net(x, None)[0])
    assert torch.equal(pred, logits.argmax(dim=1)) and pred.shape == (6,)


def test_only_row_selecting_stages_skip_client_rows() -> None:
    # row skipping (docs/benchmarks/speed.md) is on exactly for a first stage with its own select_rows
    assert Pipeline.from_spec("tokenprune:ratio=0.5").selects_rows
    assert Pipeline.from_spec("adc").selects_rows
    assert not Pipeline.from_spec("none").selects_rows and not Pipeline.from_spec("topk").selects_rows


def test_server_draws_from_seed_plus_one() -> None:
    # The server's randomness (e.g. stochastic rounding of the gradient) is its own stream,
    # seed + 1 beside the client's seed: the committed records' bytes depend on both.
    h = make("none", seed=3)
    draw = torch.rand(4, generator=h.server.generator)
    assert torch.equal(draw, torch.rand(4, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(
        torch.rand(4, generator=h.client.generator), torch.rand(4, generator=torch.Generator().manual_seed(3))
    )


def test_exact_size_is_declared_per_stage() -> None:
    # the contract compares wire and analytic bytes with == exactly where this says so
    assert Pipeline.from_spec("none").exact_size and Pipeline.from_spec("quant:bits=4+zstd").exact_size
    assert not Pipeline.from_spec("topk").exact_size


def test_a_finite_gradient_that_overflows_the_client_is_refused() -> None:
    h = make("none")
    x, y = h.batch()
    h.client.forward(x, y, 0)
    ctx = Context(True, h.cut, 0)
    data = h.pipeline.pack(h.pipeline.encode_backward(torch.full(h.client._carrier.shape, 3e38), ctx))
    before = [p.detach().clone() for p in h.client.net.parameters()]
    with pytest.raises(WireFormatError, match="non-finite"):
        h.client.backward(data)
    assert all(torch.equal(a, p) for a, p in zip(before, h.client.net.parameters())), "no update"


def test_client_forward_puts_the_stages_modules_in_training_mode() -> None:
    h = make("bottleneck:ratio=0.25")
    x, y = h.batch()
    h.client.forward_eval(x, h.pipeline)
    assert not any(m.training for m in h.pipeline.modules("client"))
    h.client.forward(x, y, 0)
    assert h.pipeline.modules("client") and all(m.training for m in h.pipeline.modules("client"))


def test_a_float_stage_output_of_the_wrong_shape_is_rejected() -> None:
    stage = Pipeline.from_spec("none").stages[0]
    _check_shape(torch.zeros(2, 3, 4), (3, 4), stage)
    for bad in (torch.zeros(2, 3, 5), torch.zeros(2, 4, 4)):
        with pytest.raises(WireFormatError, match="shape"):
            _check_shape(bad, (3, 4), stage)
    with pytest.raises(WireFormatError, match="shape"):
        _check_shape(torch.zeros(2, 3, 4, dtype=torch.int64), (3, 4), stage)
