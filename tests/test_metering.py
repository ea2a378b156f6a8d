import torch
from conftest import tiny_vit

from adcbench.core.method import Cut
from adcbench.core.pipeline import Pipeline
from adcbench.model.split import split_vit
from adcbench.train.roles import Client, Server
from adcbench.transport import Loopback
from adcbench.wire import Message

# framing of a `none` forward message: 6 (magic, version, count) + field "1.x" (name length, 3, kind
# byte, dtype, three 1-byte varint dims: 9) + field "y" (1+1+1+1 + 1: 5) + 4 (crc) = 24 bytes;
# backward: 6 + "1.g" (9) + 4 = 19 bytes.
NONE_FWD_FRAMING, NONE_BWD_FRAMING = 24, 19


def _parties(spec: str, B: int = 8, classes: int = 10):
    vit = tiny_vit(depth=4, dim=32, classes=classes)
    pipeline = Pipeline.from_spec(spec)
    c_net, s_net = split_vit(vit, 2, capture_attention=pipeline.needs_attention)
    cut = Cut(17, 32, classes, B)
    pipeline.setup(cut)
    dev = torch.device("cpu")
    return Client(c_net, pipeline, cut, 1e-3, 0, dev), Server(s_net, pipeline, cut, 1e-3, 0, dev), pipeline


def _step(client, server, transport, x, y, step=0):
    transport.send("fwd", client.forward(x, y, step))
    grad, loss = server.train_step(transport.recv("fwd"), step)
    transport.send("bwd", grad)
    client.backward(transport.recv("bwd"))
    return loss


def test_none_bytes_per_sample_exact():
    B, n, d = 8, 17, 32
    client, server, _ = _parties("none", B)
    t = Loopback()
    x, y = torch.randn(B, 1, 8, 8), torch.randint(0, 10, (B,))
    for s in range(3):
        _step(client, server, t, x, y, s)
    m = t.meter
    labels = B * 4 // 8  # 10 classes: 4-bit labels
    assert m.bytes["fwd"] == 3 * (B * 4 * n * d + labels + NONE_FWD_FRAMING)
    assert m.bytes["bwd"] == 3 * (B * 4 * n * d + NONE_BWD_FRAMING)
    assert m.parts["fwd"] == {
        "payload": 3 * B * 4 * n * d,
        "side": 0,
        "labels": 3 * labels,
        "framing": 3 * NONE_FWD_FRAMING,
    }


def test_label_type_grows_with_class_count():
    B = 4
    client, server, pipeline = _parties("none", B, classes=1000)
    t = Loopback()
    _step(client, server, t, torch.randn(B, 1, 8, 8), torch.randint(0, 1000, (B,)))
    assert t.meter.parts["fwd"]["labels"] == (10 * B + 7) // 8  # ceil(log2 1000) = 10 bits each
    assert pipeline.analytic_bytes(B)[0] == B * 4 * 17 * 32 + (10 * B + 7) // 8


def test_server_computes_on_decoded_bytes_only():
    """Tampering with the payload bytes changes what the server computes: it uses the wire."""
    B = 4
    client, server, pipeline = _parties("none", B)
    x, y = torch.randn(B, 1, 8, 8), torch.randint(0, 10, (B,))
    data = client.forward(x, y, 0)
    msg = Message.decode(data)
    msg.fields["1.x"].value = torch.zeros_like(msg["1.x"])
    server.net.eval()
    with torch.no_grad():
        out_real = server.net(pipeline.decode_forward(Message.decode(data), _ctx(pipeline))[0])
        out_fake = server.net(pipeline.decode_forward(Message.decode(msg.encode()), _ctx(pipeline))[0])
    assert not torch.allclose(out_real, out_fake)


def _ctx(pipeline):
    from adcbench.core.method import Context

    return Context(True, pipeline.cut)


def test_client_parameters_receive_gradient_through_the_wire():
    """The client's update is Adam's first step on the gradient it received: each parameter moves
    by lr * sign(grad) (bias-corrected first step), exactly, and only where the gradient is nonzero."""
    client, server, _ = _parties("adc:xi=0.25", 8)
    before = [p.detach().clone() for p in client.net.parameters()]
    _step(client, server, Loopback(), torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    moved = 0
    for b, p in zip(before, client.net.parameters()):
        assert p.grad is not None
        g = p.grad
        expected = b - 1e-3 * g / (g.abs() + 1e-8)  # Adam step 1: m/(sqrt(v)+eps) = g/(|g|+eps)
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)
        moved += int(bool((g != 0).any()))
    assert moved >= len(before) - 1, "the gradient reaches (almost) every client tensor"


def test_meter_breakdown_sums_to_bytes():
    client, server, _ = _parties("adc:xi=0.25,labels=hard", 8)
    t = Loopback()
    _step(client, server, t, torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    for d in ("fwd", "bwd"):
        assert sum(t.meter.parts[d].values()) == t.meter.bytes[d]
