import struct
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adcbench.errors import WireFormatError
from adcbench.wire import Category, Field, Message, breakdown, pack_bits, packed_nbytes, unpack_bits

DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.uint16,
    torch.uint32,
]


def sample_message() -> Message:
    g = torch.Generator().manual_seed(0)
    m = Message()
    m["0.x"] = Field.tensor(torch.randn(3, 5, 4, generator=g))
    m["0.idx"] = Field.packed(torch.randint(0, 2**11, (37,), generator=g), 11, Category.SIDE)
    m["y"] = Field.tensor(torch.tensor([1, 2, 3], dtype=torch.uint8), Category.LABELS)
    m["meta"] = Field.raw(b"hello", Category.SIDE)
    return m


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_round_trip_every_dtype(dtype):
    t = (torch.randn(2, 3, 4) * 50).to(dtype) if dtype != torch.bool else torch.rand(2, 3, 4) > 0.5
    back = Message.decode(Message({"t": Field.tensor(t)}).encode())["t"]
    assert back.dtype == dtype and back.shape == t.shape and torch.equal(back, t)


@pytest.mark.parametrize("bits", list(range(1, 33)))
def test_packed_round_trip_and_exact_size(bits):
    v = torch.randint(0, 2**bits, (1001,), dtype=torch.int64) if bits < 63 else None
    enc = Message({"c": Field.packed(v, bits)}).encode()
    assert torch.equal(Message.decode(enc)["c"], v)
    # 6 header + (1 name_len + 1 name + 1 category/kind/ndim + 1 bits + 2 varint dim) + data + 4 crc
    assert len(enc) == 6 + 6 + packed_nbytes(1001, bits) + 4


def test_pack_rejects_values_too_wide():
    with pytest.raises(ValueError):
        pack_bits(torch.tensor([8]).numpy(), 3)


def test_scalar_and_empty_tensors():
    m = Message({"s": Field.tensor(torch.tensor(3.5)), "e": Field.tensor(torch.empty(0, 4))})
    d = Message.decode(m.encode())
    assert d["s"].shape == () and float(d["s"]) == 3.5 and d["e"].shape == (0, 4)


def test_breakdown_sums_to_length_and_categories():
    enc = sample_message().encode()
    b = breakdown(enc)
    assert sum(b.values()) == len(enc)
    assert b["payload"] == 3 * 5 * 4 * 4
    assert b["side"] == packed_nbytes(37, 11) + 5
    assert b["labels"] == 3


def test_decode_keeps_order_and_categories():
    d = Message.decode(sample_message().encode())
    assert list(d) == ["0.x", "0.idx", "y", "meta"]
    assert d.fields["0.idx"].category == Category.SIDE and d.fields["0.idx"].bits == 11
    assert d["meta"] == b"hello"


def test_every_truncation_is_rejected():
    enc = sample_message().encode()
    for cut in range(len(enc)):
        with pytest.raises(WireFormatError):
            Message.decode(enc[:cut])


def test_every_single_bit_flip_is_rejected():
    enc = bytearray(sample_message().encode())
    for pos in range(0, len(enc), 7):
        bad = bytearray(enc)
        bad[pos] ^= 0x10
        with pytest.raises(WireFormatError):
            Message.decode(bytes(bad))


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_structurally_bad_messages_with_valid_crc_are_rejected():
    enc = Message({"x": Field.tensor(torch.zeros(2))}).encode()
    body = enc[:-4]
    with pytest.raises(WireFormatError, match="version"):
        Message.decode(_reseal(body[:4] + b"\x09" + body[5:]))
    with pytest.raises(WireFormatError, match="trailing"):
        Message.decode(_reseal(body + b"\x00"))
    with pytest.raises(WireFormatError, match="dtype"):  # dtype code byte after count, name_len, name, kind
        Message.decode(_reseal(body[:9] + b"\x63" + body[10:]))
    with pytest.raises(WireFormatError, match="limit"):  # claim a huge dimension (LEB128 2**31)
        Message.decode(_reseal(body[:10] + b"\x80\x80\x80\x80\x08" + body[11:]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_with_other_errors(data):
    with pytest.raises(WireFormatError):
        Message.decode(b"ADCW" + data)


def test_not_bytes_is_rejected():
    with pytest.raises(WireFormatError):
        Message.decode("ADCW")  # type: ignore[arg-type]


def test_unpack_general_width_matches_reference():
    v = torch.randint(0, 2**23, (5000,)).numpy()
    assert (unpack_bits(pack_bits(v, 23), 5000, 23) == v).all()
