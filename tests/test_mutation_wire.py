"""Wire boundaries the round-trip tests do not pin: the documented codec ids of a container, the
default limits at their exact edge (depth, message size, elements), the varint's range and size; and
what mutation testing found unpinned (the gap code's length bound and range check, int32 gaps,
the container's size edges, Message.get, bit widths around whole bytes)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from adcbench.errors import WireFormatError
from adcbench.wire import CONTAINER_MAGIC, Field, Message, breakdown, compress_container
from adcbench.wire.bits import pack_bits, packed_nbytes, unpack_bits
from adcbench.wire.containers import Codec, decompress_container
from adcbench.wire.gaps import _gaps, gap_code_bound, gap_decode, gap_encode, golomb_parameter
from adcbench.wire.limits import Limits, check_size, uvar, uvar_nbytes


def test_container_codec_ids_are_the_documented_ones() -> None:
    # containers.py header: 0 = stored, 1 = zlib, 2 = zstd (a receiver built elsewhere reads these)
    data = b"abc" * 200
    for codec, wire_id in ((Codec.ZLIB, 1), (Codec.ZSTD, 2)):
        c = compress_container(data, codec, 3)
        assert c[:4] == CONTAINER_MAGIC and c[4] == wire_id and struct.unpack("<I", c[5:9])[0] == len(data)
        assert decompress_container(c, expect=codec) == data
    assert compress_container(bytes(range(7)), Codec.ZSTD, 3)[4] == 0  # would not shrink: stored


def _nested(depth: int) -> bytes:
    data = Message({"x": Field.tensor(torch.zeros(2))}).encode()
    for _ in range(depth):
        data = CONTAINER_MAGIC + struct.pack("<BI", 0, len(data)) + data
    return data


def test_default_depth_limit_is_four_containers_exactly() -> None:
    assert breakdown(_nested(4))["lossless"] == 4 * 9
    with pytest.raises(WireFormatError, match="nested"):
        breakdown(_nested(5))


def test_default_message_limit_is_256_mib_exactly() -> None:
    check_size(1 << 28, "message", Limits())
    with pytest.raises(WireFormatError, match="limit"):
        check_size((1 << 28) + 1, "message", Limits())


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16383, 16384, 2**21, 2**28 - 1, 2**28, 2**32 - 1])
def test_varint_size_and_range(n: int) -> None:
    b = uvar(n)
    assert len(b) == uvar_nbytes(n) == max(1, -(-n.bit_length() // 7))
    assert all(x & 0x80 for x in b[:-1]) and not b[-1] & 0x80  # continuation bits
    assert sum((x & 0x7F) << (7 * i) for i, x in enumerate(b)) == n


def test_varint_rejects_out_of_range() -> None:
    for n in (-1, 2**32):
        with pytest.raises(ValueError):
            uvar(n)


# Golomb parameters m = 2, 2, 1 and 27: the code with and without its remainder stream
@pytest.mark.parametrize("kk,dim", [(3, 10), (30, 100), (5, 10), (1, 40)])
def test_gap_code_round_trips_and_bounds_its_length(kk: int, dim: int) -> None:
    rng = np.random.default_rng(kk)
    pos = np.sort(np.stack([rng.choice(dim, kk, replace=False) for _ in range(6)]), axis=1)
    data = gap_encode(pos, dim)
    assert np.array_equal(gap_decode(data, 6, kk, dim), pos)
    assert len(data) <= gap_code_bound(6, kk, dim)
    # longer than any code the decoder could read: refused before it is scanned
    with pytest.raises(WireFormatError, match="longer than any valid code"):
        gap_decode(data + bytes(16 * 6 * kk + 64), 6, kk, dim)
    if golomb_parameter(kk, dim) == 1:  # quotients only: a byte past their longest code is too long
        with pytest.raises(WireFormatError, match="longer than any valid code"):
            gap_decode(data + bytes(gap_code_bound(6, kk, dim) - len(data) + 1), 6, kk, dim)


def test_positions_past_the_dimension_are_refused() -> None:
    # quotients only (m = 1 for 5 of 10 and of 11): the code of 0, 1, 2, 3, 10 read for dim = 10
    assert golomb_parameter(5, 10) == golomb_parameter(5, 11) == 1
    data = gap_encode(np.array([[0, 1, 2, 3, 10]]), 11)
    with pytest.raises(WireFormatError, match=r"positions must lie in \[0, 10\)"):
        gap_decode(data, 1, 5, 10)


def test_gaps_of_positions_past_int32_are_exact() -> None:
    # positions are differenced in int32 only while they fit it
    assert _gaps(np.array([[0, 2**31 + 5]])).tolist() == [0, 2**31 + 4]
    assert _gaps(np.array([[3, 7]])).tolist() == [3, 3]


def _declaring(n: int) -> bytes:
    """A message whose only field declares n float32 elements (and holds 3): CRC rebuilt."""
    a, b = Message({"x": Field.tensor(torch.zeros(3))}).encode(), Message({"x": Field.tensor(torch.zeros(5))}).encode()
    i = next(j for j in range(len(a)) if a[j] != b[j])  # the shape varint
    body = a[:i] + uvar(n) + a[i + 1 : -4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_default_element_limit_is_the_documented_2_pow_28() -> None:
    assert "| `max_elements` | 2^28 |" in (Path(__file__).resolve().parents[1] / "docs/wire-format.md").read_text()
    for n, err in ((1 << 28, "truncated|short|bytes"), ((1 << 28) + 1, "exceeds the limit")):
        with pytest.raises(WireFormatError, match=err):
            Message.decode(_declaring(n))


class _Sized:
    """Only a length: what compress_container looks at before it touches any byte."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_container_refuses_inner_messages_of_2_pow_31_bytes_or_more() -> None:
    for n in (1 << 31, (1 << 32) - 1):
        with pytest.raises(ValueError, match="too large"):
            compress_container(_Sized(n), Codec.ZLIB, 3)  # type: ignore[arg-type]


def test_container_declared_length_limit_is_inclusive() -> None:
    data = bytes(range(50)) * 4
    c = compress_container(data, Codec.ZLIB, 6)
    assert decompress_container(c, limits=Limits(max_message_bytes=len(data))) == data
    with pytest.raises(WireFormatError, match="claims"):
        decompress_container(c, limits=Limits(max_message_bytes=len(data) - 1))


def test_container_inflating_past_its_header_is_refused_as_such() -> None:
    data = bytes(range(50)) * 4
    c = compress_container(data, Codec.ZLIB, 6)
    short = c[:5] + struct.pack("<I", len(data) - 1) + c[9:]  # header one byte short
    with pytest.raises(WireFormatError, match="header says"):
        decompress_container(short)


def test_message_get_is_the_value_or_none() -> None:
    msg = Message({"x": Field.tensor(torch.ones(2))})
    assert torch.equal(msg.get("x"), torch.ones(2)) and msg.get("y") is None


@pytest.mark.parametrize("bits", [7, 8, 9, 15, 16, 17, 31, 32])
def test_pack_bits_round_trip_at_and_around_byte_widths(bits: int) -> None:
    v = np.array([0, 1, (1 << bits) - 1, (1 << bits) // 3, 5, (1 << bits) - 2, 2, 3, 1 << (bits - 1)], dtype=np.int64)
    data = pack_bits(v, bits)
    assert len(data) == packed_nbytes(v.size, bits)
    assert unpack_bits(data, v.size, bits).astype(np.int64).tolist() == v.tolist()


def test_unpacked_values_take_the_smallest_safe_type() -> None:
    # uint8 up to 8 bits, int16 to 15, int32 to 31, int64 beyond: no field unpacks wider than it must
    want = {1: np.uint8, 8: np.uint8, 9: np.int16, 15: np.int16, 16: np.int32, 31: np.int32, 32: np.int64}
    for bits, dt in want.items():
        assert unpack_bits(pack_bits(np.array([1, 0, 1]), bits), 3, bits).dtype == dt, bits
