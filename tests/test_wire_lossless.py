"""Bit packing at every width, and the lossless container (zstd/zlib) with its breakdown."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adcbench.errors import WireFormatError
from adcbench.wire import (
    CONTAINER_HEADER,
    Codec,
    Field,
    Message,
    breakdown,
    compress_container,
    decompress_container,
    pack_bits,
    packed_nbytes,
    unpack_bits,
)


def reference_pack(values: np.ndarray, bits: int) -> bytes:
    """The format's definition: value i occupies bits [i*bits, (i+1)*bits), LSB first."""
    v = values.astype(np.uint64)
    bitmat = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(bitmat.ravel(), bitorder="little").tobytes()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 32), st.integers(0, 70), st.randoms(use_true_random=False))
def test_pack_bits_matches_definition(bits: int, count: int, rnd) -> None:
    values = np.array([rnd.randrange(1 << bits) for _ in range(count)], dtype=np.uint64)
    data = pack_bits(values, bits)
    assert data == reference_pack(values, bits)
    assert len(data) == packed_nbytes(count, bits)
    assert (unpack_bits(data, count, bits) == values.astype(np.int64)).all()


def test_pack_bits_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError):
        pack_bits(np.array([-1]), 5)


def _message(compressible: bool) -> bytes:
    x = (
        torch.zeros(64, 17, 32)
        if compressible
        else torch.from_numpy(np.frombuffer(os.urandom(64 * 17 * 32 * 4), dtype=np.float32).copy()).nan_to_num()
    )
    return Message({"x": Field.tensor(x), "y": Field.packed(torch.arange(64) % 10, 4)}).encode()


@pytest.mark.parametrize("codec", [Codec.ZLIB, Codec.ZSTD])
def test_container_breakdown_reports_inner_parts_and_saving(codec: Codec) -> None:
    inner = _message(compressible=True)
    data = compress_container(inner, codec, 3)
    b, ib = breakdown(data), breakdown(inner)
    assert sum(b.values()) == len(data)
    assert {k: b[k] for k in ("payload", "side", "labels", "framing")} == {
        k: ib[k] for k in ("payload", "side", "labels", "framing")
    }
    assert b["lossless"] == len(data) - len(inner) < -len(inner) // 2
    assert decompress_container(data, expect=codec) == inner


@pytest.mark.parametrize("codec", [Codec.ZLIB, Codec.ZSTD])
def test_incompressible_message_is_stored_with_header_only(codec: Codec) -> None:
    inner = _message(compressible=False)
    data = compress_container(inner, codec, 3)
    assert data[4] == Codec.STORED and len(data) == len(inner) + CONTAINER_HEADER
    assert breakdown(data)["lossless"] == CONTAINER_HEADER


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([Codec.ZLIB, Codec.ZSTD]),
    st.integers(0, 10**6),
    st.integers(0, 7),
    st.sampled_from(["truncate", "flip", "extend"]),
)
def test_corrupted_container_raises_wire_format_error(codec: Codec, pos: int, bit: int, op: str) -> None:
    inner = _message(compressible=True)
    data = compress_container(inner, codec, 3)
    i = pos % len(data)
    if op == "truncate":
        bad = data[:i]
    elif op == "flip":
        bad = data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
        try:  # a flip in deflate's final padding bits is not corruption: the same message comes out
            if decompress_container(bad, expect=codec) == inner:
                return
        except WireFormatError:
            pass
    else:
        bad = data + bytes([bit])
    with pytest.raises(WireFormatError):
        Message.decode(decompress_container(bad, expect=codec))
    with pytest.raises(WireFormatError):
        breakdown(bad)


def test_container_of_the_wrong_algorithm_is_rejected() -> None:
    data = compress_container(_message(compressible=True), Codec.ZLIB, 3)
    with pytest.raises(WireFormatError, match="expected a zstd"):
        decompress_container(data, expect=Codec.ZSTD)


def test_container_refuses_to_inflate_past_its_header() -> None:
    inner = _message(compressible=True)
    data = bytearray(compress_container(inner, Codec.ZSTD, 3))
    data[5:9] = (100).to_bytes(4, "little")  # claims 100 inner bytes; the frame holds ~140 kB
    with pytest.raises(WireFormatError):
        decompress_container(bytes(data))


@pytest.mark.parametrize("bits", [3, 5, 7, 11, 13, 23, 31])
def test_small_and_group_packing_write_the_same_stream(bits: int) -> None:
    """Fields up to 64 Kibit take the one-bit-per-byte path, larger ones the group loop: both
    must be the format's definition on either side of the threshold."""
    rng = np.random.default_rng(bits)
    small = (1 << 16) // bits
    for count in (small, small + 9):
        values = rng.integers(0, 1 << bits, count, dtype=np.uint64)
        data = pack_bits(values, bits)
        assert data == reference_pack(values, bits)
        assert (unpack_bits(data, count, bits) == values.astype(np.int64)).all()
