"""Core behaviour the gradient/decode tests do not reach: a generic `xi=` target survives stage
building and steers the native knob, and the server's evaluation answer is the argmax class of
each sample of the batch."""

from __future__ import annotations

import torch
from _harness import make, one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import read_predictions
from adcbench.core.pipeline import Pipeline
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
