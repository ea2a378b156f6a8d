"""Lossless containers: an encoded message (or container) compressed as a whole (zlib, zstd)."""

from __future__ import annotations

import enum
import struct
import zlib

import zstandard

from adcbench.errors import WireFormatError

from .limits import Limits, get_limits

# --------------------------------------------------------------------------------------------
# Lossless container: an encoded message (or container) compressed as a whole
# --------------------------------------------------------------------------------------------
#   container := MAGIC "ADCZ" | u8 algorithm | u32 inner length | body
# algorithm 0 = stored (body is the inner bytes; used whenever compression would not shrink them,
# so a container is never more than CONTAINER_HEADER bytes larger than what it holds),
# 1 = zlib, 2 = zstd. Integrity: the inner message carries its own CRC32; zlib adds Adler-32.
CONTAINER_MAGIC = b"ADCZ"
CONTAINER_HEADER = len(CONTAINER_MAGIC) + 1 + 4
MAX_INNER_BYTES = 1 << 31  # the u32 length field; the receiver's bound is Limits.max_message_bytes


class Codec(enum.IntEnum):
    STORED = 0
    ZLIB = 1
    ZSTD = 2


def compress_container(data: bytes, codec: Codec, level: int) -> bytes:
    if len(data) >= MAX_INNER_BYTES:
        raise ValueError("message too large for a lossless container")
    if codec == Codec.ZLIB:
        body = zlib.compress(data, level)
    elif codec == Codec.ZSTD:
        body = zstandard.ZstdCompressor(level=level, write_content_size=False).compress(data)
    else:
        body = data
    if len(body) >= len(data):
        codec, body = Codec.STORED, data
    return b"".join((CONTAINER_MAGIC, struct.pack("<BI", int(codec), len(data)), body))  # one copy


def decompress_container(data: bytes, expect: Codec | None = None, limits: Limits | None = None) -> bytes:
    """Inverse of `compress_container`; `expect` also accepts STORED. WireFormatError on bad bytes.
    The declared inner length is checked against `limits.max_message_bytes` first, and both codecs
    inflate in one bounded pass that stops at that length (no decompression bombs)."""
    lim = get_limits(limits)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    if len(data) > lim.max_message_bytes:
        raise WireFormatError(f"container of {len(data)} bytes exceeds the limit of {lim.max_message_bytes}")
    data = bytes(data)
    if len(data) < CONTAINER_HEADER or data[: len(CONTAINER_MAGIC)] != CONTAINER_MAGIC:
        raise WireFormatError("not a lossless container (bad magic bytes or truncated header)")
    code, length = struct.unpack_from("<BI", data, len(CONTAINER_MAGIC))
    try:
        codec = Codec(code)
    except ValueError:
        raise WireFormatError(f"unknown lossless algorithm {code}") from None
    if expect is not None and codec not in (expect, Codec.STORED):
        raise WireFormatError(f"expected a {expect.name.lower()} container, got {codec.name.lower()}")
    if length > lim.max_message_bytes:
        raise WireFormatError(f"lossless container claims {length} inner bytes (limit {lim.max_message_bytes})")
    body = memoryview(data)[CONTAINER_HEADER:]  # the codecs read views: no copy of the body
    try:
        if codec == Codec.STORED:
            inner = bytes(body)
        elif codec == Codec.ZLIB:
            d = zlib.decompressobj()
            inner = d.decompress(body, length + 1)
            if not d.eof or d.unused_data or d.unconsumed_tail:
                raise WireFormatError("zlib stream truncated or followed by extra bytes")
        else:
            # One pass, bounded by the declared length; raises if the frame is truncated, would
            # inflate past `length`, or is followed by extra bytes.
            inner = zstandard.ZstdDecompressor().decompress(
                body, max_output_size=max(1, length), allow_extra_data=False
            )
    except WireFormatError:
        raise
    except Exception as exc:  # zlib.error, zstandard.ZstdError, MemoryError on absurd frames
        raise WireFormatError(f"{codec.name.lower()} data is corrupted: {exc}") from None
    if len(inner) != length:
        raise WireFormatError(f"lossless container: {len(inner)} inner bytes, header says {length}")
    return inner
