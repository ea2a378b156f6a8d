"""Row skipping (issue 11): the last client block computed only on the cut rows a method sends
is the same computation as the full block -- same messages, loss and gradients to fp32 tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _harness import CLASSES, CPU, SPLIT, TINY, Harness, one_thread  # noqa: F401
from timm.models.vision_transformer import VisionTransformer

from adcbench.core.method import Context, Cut
from adcbench.core.pipeline import Pipeline
from adcbench.model.split import cut_shape, split_vit
from adcbench.train.roles import Client, Server
from adcbench.wire import Message

SKIPPING = [
    "adc:xi=0.1",
    "adc:xi=0.3,labels=hard",
    "adc-token:xi=0.25",
    "tokenprune:ratio=0.25",
    "adc:xi=0.1+quant:bits=8",
]
ALL_ROWS = ["none", "topk:ratio=0.1", "adc-batch:xi=0.5"]


def _make(spec: str, row_skip: bool, batch: int = 16, **vit_kw) -> Harness:
    torch.manual_seed(0)
    vit = VisionTransformer(num_classes=CLASSES, **{**TINY, **vit_kw})
    pipeline = Pipeline.from_spec(spec)
    client_net, server_net = split_vit(vit, SPLIT, capture_attention=pipeline.needs_attention)
    n, d = cut_shape(client_net, TINY["img_size"], TINY["in_chans"])
    cut = Cut(n, d, CLASSES, batch, client_net.num_prefix_tokens)
    pipeline.setup(cut)
    client = Client(client_net, pipeline, cut, 1e-3, 0, CPU, row_skip=row_skip)
    return Harness(pipeline, client, Server(server_net, pipeline, cut, 1e-3, 0, CPU), cut)


def _close_messages(a: bytes, b: bytes) -> None:
    ma, mb = Message.decode(a), Message.decode(b)
    assert ma.fields.keys() == mb.fields.keys()
    for name, f in ma.fields.items():
        va, vb = f.value, mb.fields[name].value
        if isinstance(va, torch.Tensor) and va.dtype.is_floating_point:
            torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5)
        elif isinstance(va, torch.Tensor):
            # quantized codes may differ by one step where a value sits on a rounding boundary
            assert (va.long() - vb.long()).abs().max() <= 1, name
        else:
            assert va == vb, name


def _grads(h: Harness) -> list[torch.Tensor]:
    nets = (h.client.net, h.server.net)
    return [p.grad for net in nets for p in net.parameters() if p.grad is not None]


@pytest.mark.parametrize("spec", SKIPPING + ALL_ROWS)
def test_same_messages_loss_and_gradients(spec):
    on, off = _make(spec, True), _make(spec, False)
    assert on.pipeline.selects_rows == (spec in SKIPPING)
    for step in range(2):  # the second step starts from parameters the first one updated
        fwd_on, bwd_on, loss_on = on.step(seed=step)
        fwd_off, bwd_off, loss_off = off.step(seed=step)
        _close_messages(fwd_on, fwd_off)
        _close_messages(bwd_on, bwd_off)
        assert loss_on == pytest.approx(loss_off, rel=1e-5, abs=1e-6)
        g_on, g_off = _grads(on), _grads(off)
        assert len(g_on) == len(g_off) > 0
        for a, b in zip(g_on, g_off):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for x_on, x_off in zip(on.eval_bytes(8), off.eval_bytes(8)):
        _close_messages(x_on, x_off)


@pytest.mark.parametrize("spec", ["adc:xi=0.1", "tokenprune:ratio=0.25"])
def test_only_the_declared_rows_are_computed(spec):
    h = _make(spec, True)
    x, y = h.batch()
    ctx = Context(True, h.cut, 0, torch.Generator().manual_seed(0), labels=y)
    declared = []

    def select(attention: torch.Tensor) -> torch.Tensor | None:
        ctx.attention = attention
        declared.append(h.pipeline.select_rows(ctx))
        return declared[-1]

    out, _ = h.client.net(x, select)
    computed = ~out.isnan().any(-1)  # B×n
    expected = torch.zeros_like(computed).scatter(1, declared[0], True)
    assert computed.equal(expected) and not computed.all()
    full, _ = h.client.net(x)
    torch.testing.assert_close(out[computed], full[computed], rtol=1e-5, atol=1e-6)


def test_dropout_in_the_last_block_runs_it_whole():
    """Dropout on fewer rows would draw different random numbers: such blocks are not skipped."""
    h = _make("adc:xi=0.1", True, attn_drop_rate=0.1)
    assert not h.client.net.can_skip_rows
    assert _make("adc:xi=0.1", True).client.net.can_skip_rows


def _strip(record: dict) -> dict:
    """The record's numbers: everything but timings, provenance and the runtime choices."""
    drop = {"wall_s", "cpu_s", "provenance", "runtime", "record_file"}
    rec = {k: v for k, v in record.items() if k not in drop}
    rec["history"] = [{k: v for k, v in h.items() if k not in ("wall_s", "traffic")} for h in record["history"]]
    return rec


def _assert_same_record(on: dict, off: dict) -> None:
    assert on["runtime"]["row_skip"] and not off["runtime"]["row_skip"]
    assert on["runtime"]["threads"] == 1 and on["runtime"]["threads_from"] == "--threads"
    assert on["runtime"]["compile"] is False and on["config_hash"] == off["config_hash"]
    a, b = _strip(on), _strip(off)
    for h_on, h_off in zip(a.pop("history"), b.pop("history")):
        assert h_on.pop("train_loss") == pytest.approx(h_off.pop("train_loss"), rel=1e-5)
        assert h_on == h_off  # bytes, breakdowns, accuracies, method stats
    a["final"].pop("train_loss"), b["final"].pop("train_loss")
    assert a == b


@pytest.mark.parametrize("spec", ["adc:xi=0.1"])
def test_digits_records_are_the_same(spec):
    from adcbench.train import RunConfig, run

    records = [
        run(
            RunConfig(
                method=spec, task="digits", max_steps=3, eval_every=3, out=None, progress=False, threads=1, row_skip=rs
            )
        )
        for rs in (True, False)
    ]
    _assert_same_record(*records)


CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpg"


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not (CIFAR / "cifar10-jpg-train.tar.gz").is_file(), reason="no ../shared/data/cifar10-jpg")
def test_cifar10_steps_are_the_same():
    from adcbench.train import RunConfig
    from adcbench.train.loop import build_parties, train_step
    from adcbench.transport import Loopback

    losses = []
    for rs in (True, False):
        cfg = RunConfig(
            method="adc:xi=0.1", task="cifar10", data=str(CIFAR), out=None, threads=1, row_skip=rs, batch_size=32
        )
        p = build_parties(cfg)
        transport, batches = Loopback(), iter(p.train_loader)
        losses.append([train_step(p, transport, *next(batches), step) for step in range(3)])
        losses[-1].append(dict(transport.meter.bytes))
    assert losses[0][:3] == pytest.approx(losses[1][:3], rel=1e-5)
    assert losses[0][3] == losses[1][3]
