"""Messages copied once, CRC checked once on receipt (issue 11 item 5): between the client's
encode and the server's decode a message's bytes exist once, the sender computes its CRC once,
the meter reads headers only and the receiver checks the CRC once."""

import tracemalloc

import pytest
import torch
from test_metering import _parties, _step

import adcbench.wire.format as wire_format
from adcbench.errors import WireFormatError
from adcbench.transport import Loopback
from adcbench.wire import Category, Field, Message


def test_encode_makes_one_copy_of_the_data():
    t = torch.randn(1 << 21)  # 8 MiB; torch's allocator is not traced, so only the wire's copies count
    msg = Message({"0.x": Field.tensor(t), "y": Field.tensor(torch.zeros(4, dtype=torch.uint8), Category.LABELS)})
    tracemalloc.start()
    try:
        data = msg.encode()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) > t.numel() * 4
    assert peak < 1.1 * len(data), f"encode allocated {peak / len(data):.2f}x the message"
    assert Message.decode(data)["0.x"].equal(t)


def test_crc_computed_by_the_sender_and_checked_once_by_the_receiver(monkeypatch):
    crc_bytes = []
    real = wire_format.crc32

    def counting(data, value=0):
        crc_bytes.append(len(memoryview(data)))
        return real(data, value)

    monkeypatch.setattr(wire_format, "crc32", counting)
    client, server, _ = _parties("none", 8)
    t = Loopback()
    _step(client, server, t, torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    bodies = t.meter.bytes["fwd"] + t.meter.bytes["bwd"] - 4 * 2  # the CRC covers all but itself
    assert sum(crc_bytes) == 2 * bodies  # once when encoded, once when decoded; the meter never


def test_loopback_delivers_the_same_bytes_and_the_meter_needs_no_crc():
    data = Message({"0.x": Field.tensor(torch.randn(4, 3))}).encode()
    t = Loopback()
    t.send("fwd", data)
    assert t.recv("fwd") is data  # immutable: shared, not copied
    bad = data[:-1] + bytes([data[-1] ^ 1])  # CRC broken, headers intact
    t.send("fwd", bad)  # the meter walks the headers only ...
    assert t.meter.messages["fwd"] == 2 and t.meter.parts["fwd"]["payload"] == 2 * 4 * 3 * 4
    with pytest.raises(WireFormatError, match="CRC"):
        Message.decode(t.recv("fwd"))  # ... the receiver checks the CRC
