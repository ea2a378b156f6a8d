"""The wire format: a `Message` of named fields serialized to one `bytes` object.

Every byte that would cross the client<->server cut goes through `Message.encode`, and the
receiver computes only on what `Message.decode` returns, so what is counted is what is used.
No pickle: the format is a small, documented, little-endian binary layout (docs/wire-format.md).

    message  := MAGIC "ADCW" | u8 version | u16 field_count | field* | u32 crc32(all before)
    field    := u8 name_len | name (ASCII) | u8 (category << 4 | kind) | body
    TENSOR   := u8 dtype | u8 ndim | u32 dim * ndim | data (prod(dims) * itemsize bytes)
    PACKED   := u8 bits | u8 ndim | u32 dim * ndim | data (ceil(prod(dims) * bits / 8) bytes)
    BYTES    := u32 length | data

PACKED holds unsigned integers of `bits` bits each (1..32), bit-packed LSB-first, so an n-bit
quantization code or a log2(N)-bit index costs exactly n bits on the wire. The category
(payload / side information / labels) travels in the field's kind byte, which lets a meter
break a message's size down without trusting the sender's bookkeeping.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import struct
import zlib
from typing import Iterator, Mapping

import numpy as np
import torch

from .errors import WireFormatError

MAGIC = b"ADCW"
VERSION = 1
MAX_FIELDS = 256
MAX_NDIM = 8
MAX_PACKED_BITS = 32
_NAME_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


class Kind(enum.IntEnum):
    TENSOR = 1
    PACKED = 2
    BYTES = 3


class Category(enum.IntEnum):
    PAYLOAD = 0  # the (compressed) activations or gradients themselves
    SIDE = 1  # side information: indices, masks, scales, cluster ids, ...
    LABELS = 2  # training targets


# Breakdown keys, in the order records list them. A message inside a lossless container
# (zstd/zlib) adds `lossless`: the (usually negative) change in size, container header included.
BREAKDOWN_KEYS = ("payload", "side", "labels", "framing")

# dtype code <-> (torch dtype, numpy little-endian dtype used to carry its bits)
_DTYPES: dict[int, tuple[torch.dtype, str]] = {
    1: (torch.float32, "<f4"),
    2: (torch.float16, "<f2"),
    3: (torch.bfloat16, "<i2"),  # numpy has no bfloat16: carry the raw 16 bits
    4: (torch.float64, "<f8"),
    5: (torch.int8, "i1"),
    6: (torch.uint8, "u1"),
    7: (torch.int16, "<i2"),
    8: (torch.int32, "<i4"),
    9: (torch.int64, "<i8"),
    10: (torch.bool, "u1"),
    11: (torch.uint16, "<u2"),
    12: (torch.uint32, "<u4"),
}
_DTYPE_CODE = {torch_dtype: code for code, (torch_dtype, _) in _DTYPES.items()}


@dataclasses.dataclass
class Field:
    """One named field. `value` is a tensor (TENSOR, PACKED) or bytes (BYTES)."""

    kind: Kind
    category: Category
    value: torch.Tensor | bytes
    bits: int = 0  # PACKED only

    @staticmethod
    def tensor(t: torch.Tensor, category: Category = Category.PAYLOAD) -> "Field":
        if t.dtype not in _DTYPE_CODE:
            raise TypeError(f"dtype {t.dtype} has no wire code")
        return Field(Kind.TENSOR, category, t)

    @staticmethod
    def packed(t: torch.Tensor, bits: int, category: Category = Category.SIDE) -> "Field":
        """Unsigned integers below 2**bits, stored in exactly `bits` bits each."""
        if not 1 <= bits <= MAX_PACKED_BITS:
            raise ValueError(f"bits must be in [1, {MAX_PACKED_BITS}], got {bits}")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError("packed fields hold integers")
        return Field(Kind.PACKED, category, t, bits)

    @staticmethod
    def raw(b: bytes, category: Category = Category.SIDE) -> "Field":
        return Field(Kind.BYTES, category, bytes(b))

    def data_nbytes(self) -> int:
        """Bytes of the field's data (its body without the header)."""
        if self.kind == Kind.BYTES:
            return len(self.value)  # type: ignore[arg-type]
        t = self.value
        assert isinstance(t, torch.Tensor)
        if self.kind == Kind.TENSOR:
            return t.numel() * t.element_size()
        return packed_nbytes(t.numel(), self.bits)


def packed_nbytes(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def bits_for(n_values: int) -> int:
    """Bits needed to tell `n_values` values apart (at least 1)."""
    return max(1, int(n_values - 1).bit_length())


# --------------------------------------------------------------------------------------------
# bit packing (vectorized numpy; LSB-first within the stream)
# --------------------------------------------------------------------------------------------
# Any width: 8 consecutive values of `bits` bits fill exactly `bits` bytes, so the stream is a
# matrix of groups (rows of 8 values <-> rows of `bits` bytes). Value p of a group starts at bit
# p*bits of its row; a fixed loop over p and over the <= 5 bytes it touches packs every row at
# once (values never overlap, so OR-ing bytes is exact).
def _group_layout(bits: int) -> list[tuple[int, int, int]]:
    """(position p, first byte, bit offset) for each of the 8 values of a group."""
    return [(p, (p * bits) // 8, (p * bits) % 8) for p in range(8)]


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    v = np.ascontiguousarray(values).ravel()
    if v.size and (int(v.min()) < 0 or int(v.max()) >> bits):
        raise ValueError(f"values must lie in [0, 2**{bits}) to pack in {bits} bits")
    if bits in (8, 16, 32):
        return v.astype(f"<u{bits // 8}").tobytes()
    if bits == 1:
        return np.packbits(v.astype(np.uint8), bitorder="little").tobytes()
    if bits in (2, 4):  # several values per byte, none straddles a byte
        per = 8 // bits
        w = np.zeros(-(-v.size // per) * per, dtype=np.uint8)
        w[: v.size] = v
        w = w.reshape(-1, per)
        out = w[:, 0].copy()
        for p in range(1, per):
            out |= w[:, p] << np.uint8(p * bits)
        return out.tobytes()
    count = v.size
    groups = -(-count // 8)
    g = np.zeros(groups * 8, dtype=np.uint64)
    g[:count] = v
    g = g.reshape(groups, 8)
    out = np.zeros((groups, bits), dtype=np.uint8)
    for p, first, off in _group_layout(bits):
        w = g[:, p] << np.uint64(off)
        for j in range((off + bits + 7) // 8):
            out[:, first + j] |= ((w >> np.uint64(8 * j)) & np.uint64(0xFF)).astype(np.uint8)
    return out.tobytes()[: packed_nbytes(count, bits)]


def unpack_bits(data: bytes | memoryview, count: int, bits: int) -> np.ndarray:
    if bits in (8, 16, 32):
        return np.frombuffer(data, dtype=f"<u{bits // 8}", count=count).astype(np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    if bits == 1:
        return np.unpackbits(buf, count=count, bitorder="little").astype(np.int64)
    if bits in (2, 4):
        per, mask = 8 // bits, np.uint8((1 << bits) - 1)
        out = np.empty((len(buf), per), dtype=np.uint8)
        for p in range(per):
            np.bitwise_and(buf >> np.uint8(p * bits), mask, out=out[:, p])
        return out.ravel()[:count].astype(np.int64)
    groups = -(-count // 8)
    full = np.zeros(groups * bits, dtype=np.uint8)
    n = min(len(buf), full.size)
    full[:n] = buf[:n]
    rows = full.reshape(groups, bits)
    mask = np.uint64((1 << bits) - 1)
    out = np.empty((groups, 8), dtype=np.int64)
    for p, first, off in _group_layout(bits):
        w = np.zeros(groups, dtype=np.uint64)
        for j in range((off + bits + 7) // 8):
            w |= rows[:, first + j].astype(np.uint64) << np.uint64(8 * j)
        out[:, p] = ((w >> np.uint64(off)) & mask).astype(np.int64)
    return out.ravel()[:count]


# --------------------------------------------------------------------------------------------
# Message
# --------------------------------------------------------------------------------------------
class Message:
    """An ordered set of named fields. `encode()` -> bytes; `Message.decode(bytes)` -> Message."""

    def __init__(self, fields: Mapping[str, Field] | None = None) -> None:
        self.fields: dict[str, Field] = dict(fields or {})

    def __setitem__(self, name: str, field: Field) -> None:
        if name in self.fields:
            raise KeyError(f"field {name!r} set twice")
        self.fields[name] = field

    def __getitem__(self, name: str) -> torch.Tensor | bytes:
        try:
            return self.fields[name].value
        except KeyError:
            raise WireFormatError(f"message has no field {name!r} (fields: {', '.join(self.fields)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def get(self, name: str) -> torch.Tensor | bytes | None:
        f = self.fields.get(name)
        return None if f is None else f.value

    def update(self, other: Mapping[str, Field]) -> None:
        for k, v in other.items():
            self[k] = v

    # -- serialization ------------------------------------------------------------------------
    def encode(self) -> bytes:
        if len(self.fields) > MAX_FIELDS:
            raise ValueError("too many fields")
        parts: list[bytes] = [MAGIC, struct.pack("<BH", VERSION, len(self.fields))]
        for name, f in self.fields.items():
            if not _NAME_RE.match(name):
                raise ValueError(f"invalid field name {name!r}")
            parts.append(struct.pack("<B", len(name)) + name.encode("ascii"))
            parts.append(struct.pack("<B", (int(f.category) << 4) | int(f.kind)))
            if f.kind == Kind.BYTES:
                assert isinstance(f.value, bytes)
                parts.append(struct.pack("<I", len(f.value)))
                parts.append(f.value)
                continue
            t = f.value
            assert isinstance(t, torch.Tensor)
            t = t.detach()
            if t.dim() > MAX_NDIM:
                raise ValueError(f"field {name!r}: more than {MAX_NDIM} dims")
            shape = struct.pack(f"<{t.dim()}I", *t.shape)
            if f.kind == Kind.TENSOR:
                code = _DTYPE_CODE[t.dtype]
                parts.append(struct.pack("<BB", code, t.dim()) + shape)
                parts.append(_tensor_bytes(t, _DTYPES[code][1]))
            else:
                parts.append(struct.pack("<BB", f.bits, t.dim()) + shape)
                parts.append(pack_bits(t.cpu().numpy(), f.bits))
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> "Message":
        msg = cls()
        for name, _, _, f in _parse(data, materialize=True):
            assert f is not None
            msg.fields[name] = f
        return msg


def _tensor_bytes(t: torch.Tensor, np_dtype: str) -> bytes:
    t = t.contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().astype(np_dtype, copy=False).tobytes()


def breakdown(data: bytes) -> dict[str, int]:
    """Bytes of an encoded message by category; `framing` is headers + names + CRC.
    The values sum to len(data). A lossless container (`ADCZ`) reports the breakdown of the
    message inside it plus `lossless` = len(container) - len(inner message), so payload, side and
    labels stay the uncompressed information bytes. Raises WireFormatError on malformed bytes."""
    if bytes(data[: len(CONTAINER_MAGIC)]) == CONTAINER_MAGIC:
        inner = decompress_container(data)
        out = breakdown(inner)
        out["lossless"] = out.get("lossless", 0) + len(data) - len(inner)
        return out
    out = dict.fromkeys(BREAKDOWN_KEYS, 0)
    for _, category, nbytes, _ in _parse(data, materialize=False):
        out[category.name.lower()] += nbytes
    out["framing"] = len(data) - out["payload"] - out["side"] - out["labels"]
    return out


def _parse(data: bytes, materialize: bool) -> Iterator[tuple[str, Category, int, Field | None]]:
    """Walk and validate a message; yields (name, category, data bytes, Field or None)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) + 3 + 4:
        raise WireFormatError(f"message truncated: {len(data)} bytes is shorter than any header")
    if data[:4] != MAGIC:
        raise WireFormatError("not an adcbench message (bad magic bytes)")
    # A memoryview: slicing the body and its fields costs no copy (a message can be ~20 MB).
    body, (crc,) = memoryview(data)[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise WireFormatError("message corrupted or truncated (CRC mismatch)")
    version, count = struct.unpack_from("<BH", body, 4)
    if version != VERSION:
        raise WireFormatError(f"unsupported wire format version {version} (this build reads {VERSION})")
    if count > MAX_FIELDS:
        raise WireFormatError(f"field count {count} exceeds {MAX_FIELDS}")
    pos = 7
    seen: set[str] = set()

    def take(n: int, what: str) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(body):
            raise WireFormatError(f"message truncated while reading {what}")
        chunk = body[pos : pos + n]
        pos += n
        return chunk

    for _ in range(count):
        (nlen,) = struct.unpack("<B", take(1, "field name length"))
        try:
            name = bytes(take(nlen, "field name")).decode("ascii")
        except UnicodeDecodeError:
            raise WireFormatError("field name is not ASCII") from None
        if not _NAME_RE.match(name) or name in seen:
            raise WireFormatError(f"invalid or duplicate field name {name!r}")
        seen.add(name)
        (kc,) = struct.unpack("<B", take(1, f"kind of {name!r}"))
        try:
            kind, category = Kind(kc & 0x0F), Category(kc >> 4)
        except ValueError:
            raise WireFormatError(f"field {name!r}: unknown kind/category byte {kc:#04x}") from None
        if kind == Kind.BYTES:
            (length,) = struct.unpack("<I", take(4, f"length of {name!r}"))
            raw = take(length, f"data of {name!r}")
            yield name, category, length, (Field(kind, category, bytes(raw)) if materialize else None)
            continue
        code_or_bits, ndim = struct.unpack("<BB", take(2, f"header of {name!r}"))
        if ndim > MAX_NDIM:
            raise WireFormatError(f"field {name!r}: {ndim} dims exceeds {MAX_NDIM}")
        shape = struct.unpack(f"<{ndim}I", take(4 * ndim, f"shape of {name!r}"))
        numel = int(np.prod(shape, dtype=np.int64)) if ndim else 1
        if kind == Kind.TENSOR:
            if code_or_bits not in _DTYPES:
                raise WireFormatError(f"field {name!r}: unknown dtype code {code_or_bits}")
            torch_dtype, np_dtype = _DTYPES[code_or_bits]
            nbytes = numel * np.dtype(np_dtype).itemsize
            raw = take(nbytes, f"data of {name!r}")
            if not materialize:
                yield name, category, nbytes, None
                continue
            arr = np.frombuffer(raw, dtype=np_dtype).reshape(shape)
            t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
            if torch_dtype == torch.bfloat16:
                t = t.view(torch.bfloat16)
            elif torch_dtype == torch.bool:
                if bool((t > 1).any()):
                    raise WireFormatError(f"field {name!r}: bool values other than 0/1")
                t = t.to(torch.bool)
            yield name, category, nbytes, Field(kind, category, t)
        else:
            bits = code_or_bits
            if not 1 <= bits <= MAX_PACKED_BITS:
                raise WireFormatError(f"field {name!r}: packed width {bits} outside [1, {MAX_PACKED_BITS}]")
            nbytes = packed_nbytes(numel, bits)
            raw = take(nbytes, f"data of {name!r}")
            if not materialize:
                yield name, category, nbytes, None
                continue
            vals = unpack_bits(raw, numel, bits)
            yield name, category, nbytes, Field(kind, category, torch.from_numpy(vals).reshape(shape), bits)
    if pos != len(body):
        raise WireFormatError(f"{len(body) - pos} unexpected trailing bytes after the last field")


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
