"""Regression tests for the receiver: every defect found by fuzzing the real decoding path is a
clean WireFormatError here, raised before any large allocation."""

from __future__ import annotations

import struct
import time
import zlib

import pytest
import torch
import zstandard
from _harness import make, one_thread  # noqa: F401 (module-wide fixture)

from adcbench.core.method import prediction_message, read_predictions
from adcbench.errors import WireFormatError
from adcbench.wire import (
    CONTAINER_MAGIC,
    Category,
    Codec,
    Field,
    Limits,
    Message,
    breakdown,
    compress_container,
    decompress_container,
    set_limits,
)
from adcbench.wire.limits import uvar


def _seal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _replace(data: bytes, spec_pipeline, name: str, field: Field | None) -> bytes:
    msg = spec_pipeline.unpack(data)
    fields = {k: (field if k == name else f) for k, f in msg.fields.items()}
    if name not in fields:
        fields[name] = field
    return spec_pipeline.pack(Message({k: f for k, f in fields.items() if f is not None}))


def test_a_shape_whose_element_count_overflows_int64_is_a_wire_error() -> None:
    dims = b"".join(uvar(2**32 - 1) for _ in range(3))  # (2^32-1)^3 elements > 2^63
    body = b"ADCW\x02\x01" + b"\x01x" + bytes([(0 << 6) | (1 << 4) | 3, 1]) + dims
    with pytest.raises(WireFormatError, match="limit"):
        Message.decode(_seal(body))
    with pytest.raises(WireFormatError):
        breakdown(_seal(body))


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.ZLIB])
def test_decompression_bombs_stop_at_the_declared_length(codec: Codec) -> None:
    bomb = compress_container(b"\0" * (16 << 20), codec, 6)  # 16 MiB of zeros, a few KB on the wire
    assert len(bomb) < 1 << 17
    lied = bomb[:5] + struct.pack("<I", 1000) + bomb[9:]  # claims 1000 bytes
    t0 = time.perf_counter()
    with pytest.raises(WireFormatError):
        decompress_container(lied)
    assert time.perf_counter() - t0 < 1.0  # one bounded pass, not a full inflation
    with pytest.raises(WireFormatError, match="limit"):  # honest about 16 MiB, above a 1 MiB cap
        decompress_container(bomb, limits=Limits(max_message_bytes=1 << 20))
    huge = CONTAINER_MAGIC + struct.pack("<BI", int(codec), 2**32 - 1) + bomb[9:]
    with pytest.raises(WireFormatError, match="limit"):
        decompress_container(huge)


def test_zstd_decompresses_once() -> None:
    data = zstandard.ZstdCompressor().compress(b"a" * 1000)
    with pytest.raises(WireFormatError):  # trailing bytes after the frame, seen in the same pass
        decompress_container(CONTAINER_MAGIC + struct.pack("<BI", 2, 1000) + data + b"x")


def test_nested_containers_stop_at_the_depth_limit() -> None:
    data = Message({"x": Field.tensor(torch.zeros(2))}).encode()
    for _ in range(5000):  # would be a RecursionError without the limit
        data = CONTAINER_MAGIC + struct.pack("<BI", 0, len(data)) + data
    with pytest.raises(WireFormatError, match="nested"):
        breakdown(data)


def test_one_bit_fields_unpack_to_one_byte_per_value() -> None:
    msg = Message.decode(Message({"m": Field.packed(torch.ones(1000, dtype=torch.uint8), 1)}).encode())
    assert msg["m"].dtype == torch.uint8


def test_the_message_size_cap_applies_before_parsing() -> None:
    prev = set_limits(Limits(max_message_bytes=100))
    try:
        with pytest.raises(WireFormatError, match="limit"):
            Message.decode(Message({"x": Field.tensor(torch.zeros(100))}).encode())
    finally:
        set_limits(prev)


@pytest.mark.parametrize("bad", [123, None, 1.5, "ADCW", [1, 2]])
def test_non_bytes_input_is_a_wire_error(bad) -> None:
    h = make("topk:ratio=0.1+zstd")
    with pytest.raises(WireFormatError):
        h.server.train_step(bad, 0)
    for fn in (Message.decode, breakdown, decompress_container):
        with pytest.raises(WireFormatError):
            fn(bad)


def _adc(spec: str = "adc:xi=0.25"):
    h = make(spec)
    x, y = h.batch()
    return h, h.client.forward(x, y, 0)


@pytest.mark.parametrize(
    "name,field",
    [
        ("0.y", Field.tensor(torch.full((16,), -1, dtype=torch.int8), Category.LABELS)),  # negative
        ("0.y", Field.tensor(torch.zeros(16, 1, dtype=torch.uint8), Category.LABELS)),  # (B, 1)
        ("0.y", Field.tensor(torch.full((16,), 1.7), Category.LABELS)),  # float labels
        ("0.y", Field.packed(torch.zeros(15, dtype=torch.uint8), 4, Category.LABELS)),  # too few
        ("0.y", Field.packed(torch.full((16,), 12), 4, Category.LABELS)),  # class 12 of 10
        ("0.cid", Field.tensor(torch.full((16,), -1, dtype=torch.int8), Category.SIDE)),  # negative id
        ("0.cid", Field.packed(torch.zeros(16, dtype=torch.uint8), 2, Category.SIDE)),  # empty clusters
        ("0.cid", None),  # missing ids
        ("0.y", Field.packed(torch.zeros(16, dtype=torch.uint8), 4, Category.SIDE)),  # falsified category
        ("0.extra", Field.raw(b"x")),  # a field the method never sends
        ("y", Field.packed(torch.zeros(16, dtype=torch.uint8), 4, Category.LABELS)),  # labels twice
    ],
)
def test_adc_hard_labels_are_validated(name: str, field: Field | None) -> None:
    h, fwd = _adc()
    with pytest.raises(WireFormatError):
        make("adc:xi=0.25").server.train_step(_replace(fwd, h.pipeline, name, field), 0)


@pytest.mark.parametrize("soft", ["negative", "not normalized", "nan", "wrong shape"])
def test_adc_soft_labels_must_be_probability_rows(soft: str) -> None:
    h, fwd = _adc("adc:xi=0.25,labels=soft")
    rows = h.pipeline.unpack(fwd)["0.soft"].clone()
    if soft == "negative":
        rows[0, :2] = torch.tensor([1.5, -0.5])
    elif soft == "not normalized":
        rows *= 2
    elif soft == "nan":
        rows[0, 0] = float("nan")
    else:
        rows = rows[:, :-1].contiguous()
    with pytest.raises(WireFormatError):
        make("adc:xi=0.25,labels=soft").server.train_step(
            _replace(fwd, h.pipeline, "0.soft", Field.tensor(rows, Category.LABELS)), 0
        )


@pytest.mark.parametrize(
    "codes",
    [
        Field.tensor(torch.full((16, 17, 32), 0.5), Category.PAYLOAD),  # fractional codes
        Field.tensor(torch.ones(16, 17, 32, dtype=torch.bool), Category.PAYLOAD),  # bool codes
    ],
)
def test_quant_codes_must_be_integers(codes: Field) -> None:
    h = make("quant:bits=4")
    x, y = h.batch()
    with pytest.raises(WireFormatError):
        make("quant:bits=4").server.train_step(_replace(h.client.forward(x, y, 0), h.pipeline, "0.codes", codes), 0)


def test_quant_huge_scales_that_overflow_are_rejected() -> None:
    h = make("quant:bits=4")
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    scale = h.pipeline.unpack(fwd)["0.scale"].clone()
    scale[:, 1] = 3e38  # finite, but codes times step overflow to inf
    with pytest.raises(WireFormatError, match="non-finite"):
        make("quant:bits=4").server.train_step(
            _replace(fwd, h.pipeline, "0.scale", Field.tensor(scale, Category.SIDE)), 0
        )


def test_nan_payload_is_bad_input_not_divergence() -> None:
    h = make("none")
    x, y = h.batch()
    fwd = h.client.forward(x, y, 0)
    nan = torch.full((16, 17, 32), float("nan"))
    with pytest.raises(WireFormatError):
        make("none").server.train_step(_replace(fwd, h.pipeline, "1.x", Field.tensor(nan)), 0)
    with pytest.raises(WireFormatError):  # evaluation: an all-NaN payload is not class 0 everywhere
        h.server.predict(
            _replace(h.client.forward_eval(x, h.pipeline), h.pipeline, "1.x", Field.tensor(nan)), h.pipeline
        )


def test_nan_gradient_is_rejected_before_touching_the_weights() -> None:
    h = make("none")
    x, y = h.batch()
    h.client.forward(x, y, 0)
    before = [p.detach().clone() for p in h.client.net.parameters()]
    nan = Message({"1.g": Field.tensor(torch.full((16, 17, 32), float("nan")))}).encode()
    with pytest.raises(WireFormatError):
        h.client.backward(nan)
    assert all(torch.equal(a, b) for a, b in zip(before, h.client.net.parameters()))


@pytest.mark.parametrize("shape", [(1,), (16, 1), (15,)])
def test_prediction_messages_must_match_the_batch(shape: tuple[int, ...]) -> None:
    with pytest.raises(WireFormatError):
        read_predictions(prediction_message(torch.zeros(shape, dtype=torch.long), 10), 16, 10)
    good = prediction_message(torch.arange(16) % 10, 10)
    assert torch.equal(read_predictions(good, 16, 10), torch.arange(16) % 10)
    assert len(good) == 6 + 8 + 8 + 4  # header, field "pred", 16 predictions at 4 bits, CRC
