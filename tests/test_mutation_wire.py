"""Wire boundaries the round-trip tests do not pin: the documented codec ids of a container, the
default limits at their exact edge (depth, message size), and the varint's range and size."""

from __future__ import annotations

import struct

import pytest
import torch

from adcbench.errors import WireFormatError
from adcbench.wire import CONTAINER_MAGIC, Field, Message, breakdown, compress_container
from adcbench.wire.containers import Codec, decompress_container
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
