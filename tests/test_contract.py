"""The method contract, checked for every registered method (from the registry, so a new method is
covered automatically) and for a set of compositions. Everything goes through real bytes and the
real Client/Server roles on a tiny split ViT (17 tokens of width 32, batch 16)."""

from __future__ import annotations

import math
import os
import struct
import threading
import time
import zlib

import pytest
import torch
from _harness import BATCH, make, one_thread  # noqa: F401 (module-wide fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adcbench.core.method import METHODS
from adcbench.core.pipeline import LosslessStage, Pipeline
from adcbench.errors import AdcbenchError, TrainingDivergedError, WireFormatError
from adcbench.wire import CONTAINER_HEADER, Category, Field, Kind, Message, breakdown


def is_lossless(name: str) -> bool:
    return issubclass(METHODS.get(name), LosslessStage)


def base_spec(stage: str) -> str:
    """A runnable spec for one stage `name[:params]` (lossless stages wrap a 4-bit quantizer)."""
    return f"quant:bits=4+{stage}" if is_lossless(stage.partition(":")[0]) else stage


NAMES = METHODS.names()
COMPOSITIONS = [
    "adc:xi=0.1+quant:bits=8",
    "adc:xi=0.2,labels=hard+float:dtype=float16",
    "bottleneck:ratio=0.1+quant:bits=4",
    "topk:ratio=0.1+quant:bits=8",
    "topk:ratio=0.3,values=float16",
    "randtopk:ratio=0.2+quant:bits=4,rounding=stochastic",
    "tokenprune:ratio=0.5+topk:ratio=0.2",
    "c3sl:R=2+quant:bits=6,granularity=token",
    "adc+quant:bits=8+zstd",
    "topk:ratio=0.05+zlib:level=9",
    "none+zstd+zlib",
]
SPECS = [base_spec(n) for n in NAMES] + COMPOSITIONS


def info_bytes(data: bytes) -> int:
    b = breakdown(data)
    return b["payload"] + b["side"] + b["labels"]


def framing_bound(data: bytes) -> int:
    """Headers, names and CRC: at most 11 bytes per message + 48 per field (+ containers)."""
    inner = data
    while inner[:4] == b"ADCZ":
        from adcbench.wire import decompress_container

        inner = decompress_container(inner)
    return 11 + 48 * len(Message.decode(inner).fields)


# --------------------------------------------------------------------------------------------
# registry-level declarations
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_declarations(name: str) -> None:
    cls = METHODS.get(name)
    assert cls.description and cls.eval_compressed, "every method states what it does and its eval behaviour"
    for p in cls.params:
        assert p.help and p.type in (int, float, str, bool)
    if not is_lossless(name) and name != "none":
        knob, values = cls.rate_param  # every lossy method declares its rate knob
        assert knob in {p.name for p in cls.params} and len(values) >= 2
    if not is_lossless(name):  # the receiver fixes each field's category, not the sender
        assert cls.field_categories is not None, f"{name} must declare field_categories"


# --------------------------------------------------------------------------------------------
# round trip, gradients, analytic size
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS)
def test_round_trip_and_gradients(spec: str) -> None:
    h = make(spec)
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    assert isinstance(fwd, bytes)
    msg = h.pipeline.unpack(fwd)
    server_in, leaf, targets = h.pipeline.decode_forward(msg, _train_ctx(h))
    assert server_in.dtype == torch.float32 and server_in.dim() == 3 and server_in.shape[2] == h.cut.dim
    assert targets is not None and targets.shape[0] == server_in.shape[0]
    assert torch.isfinite(server_in).all()

    bwd, loss = h.server.train_step(fwd, 0)
    assert math.isfinite(loss)
    grad = h.pipeline.decode_backward(h.pipeline.unpack(bwd), h.client._ctx)
    assert grad.shape == h.client._carrier.shape and grad.dtype == torch.float32
    h.client.backward(bwd)
    for module in [h.client.net, *h.pipeline.modules("client")]:
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads), "the gradient reaches the client's parameters"
    emb = h.client.net.vit.patch_embed.proj.weight.grad
    assert emb is not None and float(emb.abs().sum()) > 0


def _train_ctx(h):
    from adcbench.core.method import Context

    return Context(True, h.cut, 0, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("spec", SPECS)
def test_wire_matches_analytic(spec: str) -> None:
    h = make(spec)
    fwd, bwd, _ = h.step()
    a_fwd, a_bwd = h.pipeline.analytic_bytes(BATCH)
    if h.pipeline.exact_size:
        assert info_bytes(fwd) == a_fwd and info_bytes(bwd) == a_bwd
    else:  # entropy-coded positions: the analytic size is the longest valid code
        assert info_bytes(fwd) <= a_fwd and info_bytes(bwd) <= a_bwd
    for data in (fwd, bwd):
        b = breakdown(data)
        assert sum(b.values()) == len(data)
        assert 0 < b["framing"] <= framing_bound(data)
        if h.pipeline.lossless:
            # the contract for lossless stages: never more than a header per stage above the message
            assert b["lossless"] <= CONTAINER_HEADER * len(h.pipeline.lossless)
        else:
            assert "lossless" not in b
    # eval messages: no labels, no backward; 13 is not a multiple of any tested c3sl R
    efwd, _ = h.eval_bytes(13)
    a_eval = h.pipeline.analytic_bytes(13, training=False, labels=False)[0]
    assert info_bytes(efwd) == a_eval if h.pipeline.exact_size else info_bytes(efwd) <= a_eval


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS.get(n).rate_param])
def test_bytes_fall_as_rate_tightens(name: str) -> None:
    if METHODS.get(name).rate_trained:
        pytest.skip(f"{name}: its rate knob acts through training (bytes at initialization do not depend on it)")
    knob, values = METHODS.get(name).rate_param
    totals = []
    for v in values:
        fwd, bwd, _ = make(base_spec(f"{name}:{knob}={v}")).step()
        totals.append((len(fwd), len(bwd)))
    sums = [f + b for f, b in totals]
    assert all(a > b for a, b in zip(sums, sums[1:])), f"{name} {knob}={values}: wire bytes {totals}"
    fwds = [f for f, _ in totals]
    assert all(a > b for a, b in zip(fwds, fwds[1:]))


# --------------------------------------------------------------------------------------------
# determinism and eval
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS + ["quant:bits=3,rounding=stochastic", "randtopk:alpha=0.5"])
def test_same_seed_same_bytes(spec: str) -> None:
    runs = []
    for _ in range(2):
        h = make(spec, seed=3)
        runs.append([h.step(seed=s)[:2] for s in range(2)])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("spec", SPECS)
def test_eval_policy_compressed(spec: str) -> None:
    h = make(spec)
    h.step()
    fwd1, pred1 = h.eval_bytes(13, seed=5)
    fwd2, pred2 = h.eval_bytes(13, seed=5)
    pred = Message.decode(pred1)["pred"]
    assert pred.shape == (13,) and int(pred.max()) < h.cut.num_classes
    assert "y" not in h.pipeline.unpack(fwd1), "eval messages carry no labels"
    if not any(s.config.get("rounding") == "stochastic" for s in h.pipeline.stages):
        assert (fwd1, pred1) == (fwd2, pred2), "compressed evaluation is deterministic"


# --------------------------------------------------------------------------------------------
# malformed bytes
# --------------------------------------------------------------------------------------------
def _corrupt(data: bytes, op: str, a: int, b: int, junk: bytes) -> bytes:
    if op == "truncate":
        return data[: a % len(data)]
    if op == "flip":
        i = a % len(data)
        return data[:i] + bytes([data[i] ^ (1 << (b % 8))]) + data[i + 1 :]
    if op == "splice":
        i = a % len(data)
        return data[:i] + junk + data[i + len(junk) :]
    if op == "extend":
        return data + junk
    return junk


def _resealed(pipeline: Pipeline, data: bytes, op: str, a: int, b: int, junk: bytes) -> bytes:
    """A crafted message: the inner message's header or body bytes changed and its CRC (and any
    container) rebuilt, so the structural and semantic checks are what must catch it."""
    body = _inner(data)[:-4]
    i = 6 + a % max(1, len(body) - 6)  # keep magic and version: past them is what is crafted
    if op == "set":
        body = body[:i] + bytes([junk[0]]) + body[i + 1 :]
    elif op == "insert":
        body = body[:i] + junk + body[i:]
    elif op == "delete":
        body = body[:i] + body[i + 1 + b :]
    else:  # "count": another field count
        body = body[:5] + bytes([junk[0]]) + body[6:]
    inner = body + struct.pack("<I", zlib.crc32(body))
    for lz in pipeline.lossless:
        inner = lz.compress(inner)
    return inner


CORRUPTION = st.tuples(
    st.sampled_from(["truncate", "flip", "splice", "extend", "random"]),
    st.integers(0, 1 << 20),
    st.integers(0, 7),
    st.binary(min_size=1, max_size=64),
)
CRAFTED = st.tuples(
    st.sampled_from(["set", "set", "insert", "delete", "count"]),
    st.integers(0, 1 << 20),
    st.integers(0, 7),
    st.binary(min_size=1, max_size=16),
)
CASE_SECONDS = 2.0  # each fuzz case must finish within this
PEAK_MB = 256  # and the process may not grow by more than this over a method's fuzz run


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond by a thread."""

    def __enter__(self) -> _PeakRSS:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _only_wire_errors(fn, data: bytes, label: str, allow_success: bool) -> None:
    """Run one decoding call: WireFormatError is the only acceptable error (for crafted but
    well-formed bytes also a clean result, or a diverged loss), within CASE_SECONDS."""
    t0 = time.perf_counter()
    try:
        fn(data)
    except WireFormatError:
        pass
    except TrainingDivergedError:  # finite but huge values: a clean, named error
        assert allow_success, label
    else:
        assert allow_success, f"{label} was accepted"
    assert time.perf_counter() - t0 < CASE_SECONDS, f"{label} took {time.perf_counter() - t0:.1f} s"


FOREIGN = ["none", "topk:ratio=0.2", "adc:xi=0.25", "quant:bits=4+zstd", "c3sl:R=2"]


@pytest.mark.parametrize("spec", SPECS)
def test_fuzzed_bytes_raise_only_wire_format_error(spec: str) -> None:
    """Random, crafted (CRC rebuilt) and foreign messages into the real decoding paths: the
    server's train step, the client's backward and the server's evaluation."""
    h = make(spec)
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    bwd, _ = make(spec).server.train_step(fwd, 0)  # a valid gradient message from a twin server
    efwd = h.client.forward_eval(x, h.pipeline)
    server = make(spec).server

    def backward(data: bytes) -> None:
        nonlocal h
        try:
            h.client.backward(data)
        finally:
            if h.client._carrier is None:  # accepted: re-arm for the next case
                try:
                    h.client.forward(x, y, 0)
                except TrainingDivergedError:  # a huge finite gradient overflowed Adam: start over
                    h = make(spec)
                    h.client.forward(x, y, 0)

    paths = [
        ("fwd", fwd, lambda d: server.train_step(d, 0)),
        ("bwd", bwd, backward),
        ("eval", efwd, lambda d: server.predict(d, h.pipeline)),
    ]

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(CORRUPTION, CRAFTED)
    def check(c, k) -> None:
        for direction, good, fn in paths:
            bad = _corrupt(good, *c)
            if bad != good:
                _only_wire_errors(fn, bad, f"{direction} {c[0]}", allow_success=False)
            crafted = _resealed(h.pipeline, good, *k)
            _only_wire_errors(fn, crafted, f"{direction} crafted {k[0]}", allow_success=True)

    with _PeakRSS() as mem:
        check()
        for other in FOREIGN:
            if other == spec:
                continue
            o = make(other)
            ofwd = o.client.forward(x, y, 0)
            obwd, _ = make(other).server.train_step(ofwd, 0)
            for data, (direction, _, fn) in zip((ofwd, obwd, o.client.forward_eval(x, o.pipeline)), paths):
                _only_wire_errors(fn, data, f"{direction} foreign {other}", allow_success=True)
    assert mem.mb < PEAK_MB, f"decoding fuzzed messages grew the process by {mem.mb:.0f} MB"


def _mutations(f: Field) -> list[tuple[str, Field | None]]:
    """Well-formed replacements for one field: dropped, reshaped, extreme values, NaN."""
    out: list[tuple[str, Field | None]] = [("drop", None)]
    if f.kind == Kind.BYTES:
        return out
    t = f.value
    assert isinstance(t, torch.Tensor)
    if t.numel() > 1:
        out.append(("reshape", Field(f.kind, f.category, t.reshape(-1)[:-1].clone(), f.bits)))
    if t.dim() >= 1:
        out.append(("extra-row", Field(f.kind, f.category, torch.cat([t, t[:1]]), f.bits)))
    if f.kind == Kind.PACKED:
        out.append(("max", Field(f.kind, f.category, torch.full_like(t, (1 << f.bits) - 1), f.bits)))
    elif t.dtype.is_floating_point:
        if f.category != Category.PAYLOAD:  # side info and labels must be finite; payload NaNs diverge
            out.append(("nan", Field(f.kind, f.category, torch.full_like(t, float("nan")))))
    elif t.dtype != torch.bool:
        out.append(("max", Field(f.kind, f.category, torch.full_like(t, torch.iinfo(t.dtype).max))))
    return out


def _rebuilt(msg: Message, name: str, repl: Field | None) -> Message:
    fields = {k: (repl if k == name else f) for k, f in msg.fields.items()}
    return Message({k: f for k, f in fields.items() if f is not None})


# A mutation of these kinds must be rejected; value mutations may also be legitimate values
# (e.g. the largest quantization code), in which case the step must still complete cleanly.
MUST_RAISE = {"drop", "reshape", "extra-row", "nan"}


@pytest.mark.parametrize("spec", SPECS)
def test_wellformed_wrong_fields_raise_wire_format_error(spec: str) -> None:
    h = make(spec)
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    twin = make(spec)
    bwd, _ = twin.server.train_step(fwd, 0)
    cases = [("fwd", Message.decode(_inner(fwd))), ("bwd", Message.decode(_inner(bwd)))]
    checked = 0
    for direction, msg in cases:
        for name, f in msg.fields.items():
            for kind, repl in _mutations(f):
                data = h.pipeline.pack(_rebuilt(msg, name, repl))
                label = f"{direction} field {name!r} {kind}"
                try:
                    if direction == "fwd":
                        _, loss = make(spec).server.train_step(data, 0)
                        assert math.isfinite(loss), label
                    else:
                        h.client.backward(data)
                        h.client.forward(x, y, 0)  # re-arm for the next backward
                except WireFormatError:
                    checked += 1
                    continue
                except AdcbenchError as exc:  # e.g. a diverged loss is still a clean, named error
                    assert kind not in MUST_RAISE, f"{label}: {type(exc).__name__}: {exc}"
                    continue
                assert kind not in MUST_RAISE, f"{label} was accepted"
    assert checked > 0


def _inner(data: bytes) -> bytes:
    from adcbench.wire import decompress_container

    while data[:4] == b"ADCZ":
        data = decompress_container(data)
    return data


# --------------------------------------------------------------------------------------------
# spec-level errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_unknown_and_out_of_range_params_are_param_errors(name: str) -> None:
    from adcbench.errors import ParamError

    with pytest.raises(ParamError):
        Pipeline.from_spec(base_spec(f"{name}:no_such_param=1"))
    cls = METHODS.get(name)
    for p in cls.params:
        bad = "not-a-number" if p.type in (int, float) else ("maybe" if p.type is bool else None)
        if bad is None and p.choices:
            bad = "no-such-choice"
        if bad is not None:
            with pytest.raises(ParamError):
                Pipeline.from_spec(base_spec(f"{name}:{p.name}={bad}"))


def test_lossless_stage_must_come_last() -> None:
    from adcbench.errors import ParamError

    with pytest.raises(ParamError):
        Pipeline.from_spec("zstd+none")
    with pytest.raises(ParamError):
        Pipeline.from_spec("topk:values=float16+quant:bits=8")
