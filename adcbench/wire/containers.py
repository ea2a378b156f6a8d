"""Lossless containers: an encoded message (or container) compressed as a whole (zlib, zstd)."""

from __future__ import annotations

import enum
import struct
import zlib

from adcbench.errors import WireFormatError

# --------------------------------------------------------------------------------------------
# Lossless container: an encoded message (or container) compressed as a whole
# --------------------------------------------------------------------------------------------
#   container := MAGIC "ADCZ" | u8 algorithm | u32 inner length | body
# algorithm 0 = stored (body is the inner bytes; used whenever compression would not shrink them,
# so a container is never more than CONTAINER_HEADER bytes larger than what it holds),
# 1 = zlib, 2 = zstd. Integrity: the inner message carries its own CRC32; zlib adds Adler-32.
CONTAINER_MAGIC = b"ADCZ"
CONTAINER_HEADER = len(CONTAINER_MAGIC) + 1 + 4
MAX_INNER_BYTES = 1 << 31  # refuse to inflate beyond 2 GiB (decompression bombs)


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
        import zstandard

        body = zstandard.ZstdCompressor(level=level, write_content_size=False).compress(data)
    else:
        body = data
    if len(body) >= len(data):
        codec, body = Codec.STORED, data
    return CONTAINER_MAGIC + struct.pack("<BI", int(codec), len(data)) + body


def decompress_container(data: bytes, expect: Codec | None = None) -> bytes:
    """Inverse of `compress_container`; `expect` also accepts STORED. WireFormatError on bad bytes."""
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
    if length >= MAX_INNER_BYTES:
        raise WireFormatError(f"lossless container claims {length} inner bytes")
    body = data[CONTAINER_HEADER:]
    try:
        if codec == Codec.STORED:
            inner = body
        elif codec == Codec.ZLIB:
            d = zlib.decompressobj()
            inner = d.decompress(body, length + 1)
            if not d.eof or d.unused_data or d.unconsumed_tail:
                raise WireFormatError("zlib stream truncated or followed by extra bytes")
        else:
            import zstandard

            # Bounded first (raises if the frame is truncated or inflates past `length`), then a
            # streaming pass that sees trailing bytes, which the one-shot call ignores.
            inner = zstandard.ZstdDecompressor().decompress(body, max_output_size=max(1, length))
            d = zstandard.ZstdDecompressor().decompressobj()
            if d.decompress(body) != inner or not d.eof or d.unused_data:
                raise WireFormatError("zstd frame truncated or followed by extra bytes")
    except WireFormatError:
        raise
    except Exception as exc:  # zlib.error, zstandard.ZstdError, MemoryError on absurd frames
        raise WireFormatError(f"{codec.name.lower()} data is corrupted: {exc}") from None
    if len(inner) != length:
        raise WireFormatError(f"lossless container: {len(inner)} inner bytes, header says {length}")
    return inner
