"""The wire format: a `Message` of named fields serialized to one `bytes` object.

Every byte that would cross the client<->server cut goes through `Message.encode`, and the
receiver computes only on what `Message.decode` returns, so what is counted is what is used.
No pickle: the format is a small, documented, little-endian binary layout (docs/wire-format.md).

    message  := MAGIC "ADCW" | u8 version | u8 field_count | field* | u32 crc32(all before)
    field    := u8 name_len | name (ASCII) | u8 (category << 6 | kind << 4 | ndim) | body
    TENSOR   := u8 dtype | uvar dim * ndim | data (prod(dims) * itemsize bytes)
    PACKED   := u8 bits | uvar dim * ndim | data (ceil(prod(dims) * bits / 8) bytes)
    BYTES    := uvar length | data
    uvar     := unsigned LEB128, canonical, at most 5 bytes (< 2**32)

PACKED holds unsigned integers of `bits` bits each (1..32), bit-packed LSB-first, so an n-bit
quantization code or a log2(N)-bit index costs exactly n bits on the wire. The category
(payload / side information / labels) travels in the field's kind byte; the receiving method
checks it against the category it declares for that field (`Method.field_categories`), so a
breakdown of an accepted message cannot be falsified by the sender.

Every declared size is checked against `Limits` (message bytes, elements per field, container
depth) and against the bytes actually present before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import struct
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from isal.isal_zlib import crc32  # ISA-L's CRC-32: zlib's polynomial and values, ~3x faster

from adcbench.errors import WireFormatError

from .bits import pack_bits, packed_nbytes, unpack_bits
from .containers import CONTAINER_MAGIC, decompress_container
from .limits import Limits, get_limits, uvar, uvar_nbytes

MAGIC = b"ADCW"
VERSION = 2  # 2: u8 field count, LEB128 dims and lengths (v1: u16 count, u32 dims)
MAX_FIELDS = 255
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


_KINDS = {int(k): k for k in Kind}  # dict lookups: an Enum call per field costs more than the parse
_CATEGORIES = {int(c): c for c in Category}

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
    def tensor(t: torch.Tensor, category: Category = Category.PAYLOAD) -> Field:
        if t.dtype not in _DTYPE_CODE:
            raise TypeError(f"dtype {t.dtype} has no wire code")
        return Field(Kind.TENSOR, category, t)

    @staticmethod
    def packed(t: torch.Tensor, bits: int, category: Category = Category.SIDE) -> Field:
        """Unsigned integers below 2**bits, stored in exactly `bits` bits each."""
        if not 1 <= bits <= MAX_PACKED_BITS:
            raise ValueError(f"bits must be in [1, {MAX_PACKED_BITS}], got {bits}")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError("packed fields hold integers")
        return Field(Kind.PACKED, category, t, bits)

    @staticmethod
    def raw(b: bytes, category: Category = Category.SIDE) -> Field:
        return Field(Kind.BYTES, category, bytes(b))

    def data_nbytes(self) -> int:
        """Bytes of the field's data (its body without the header)."""
        if self.kind == Kind.BYTES:
            return len(self.value)
        t = self.value
        assert isinstance(t, torch.Tensor)
        if self.kind == Kind.TENSOR:
            return t.numel() * t.element_size()
        return packed_nbytes(t.numel(), self.bits)


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
        """The message as one `bytes` object. Headers and data are gathered as views (a
        contiguous CPU tensor's memory is not copied) and joined once, with the CRC computed
        over the same views, so the encoded message is the only copy of the data."""
        if len(self.fields) > MAX_FIELDS:
            raise ValueError("too many fields")
        parts: list[bytes | memoryview] = [MAGIC, struct.pack("<BB", VERSION, len(self.fields))]
        for name, f in self.fields.items():
            parts.extend(_field_parts(name, f))
        crc = 0
        for part in parts:
            crc = crc32(part, crc)
        parts.append(struct.pack("<I", crc))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, limits: Limits | None = None) -> Message:
        msg = cls()
        for name, _, _, f in _parse(data, materialize=True, limits=get_limits(limits)):
            assert f is not None
            msg.fields[name] = f
        return msg


def _field_parts(name: str, f: Field) -> list[bytes | memoryview]:
    """Header and data of one field, the data as a view where the tensor allows it."""
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid field name {name!r}")
    ndim = f.value.dim() if isinstance(f.value, torch.Tensor) else 0
    if ndim > MAX_NDIM:
        raise ValueError(f"field {name!r}: more than {MAX_NDIM} dims")
    head = struct.pack("<B", len(name)) + name.encode("ascii")
    head += struct.pack("<B", (int(f.category) << 6) | (int(f.kind) << 4) | ndim)
    if f.kind == Kind.BYTES:
        assert isinstance(f.value, bytes)
        return [head + uvar(len(f.value)), f.value]
    t = f.value
    assert isinstance(t, torch.Tensor)
    t = t.detach()
    shape = b"".join(uvar(n) for n in t.shape)
    if f.kind == Kind.TENSOR:
        code = _DTYPE_CODE[t.dtype]
        return [head + struct.pack("<B", code) + shape, _tensor_view(t, _DTYPES[code][1])]
    return [head + struct.pack("<B", f.bits) + shape, pack_bits(t.cpu().numpy(), f.bits)]


def _tensor_view(t: torch.Tensor, np_dtype: str) -> memoryview:
    """The tensor's bytes in wire order: a view of its memory when it is a contiguous CPU tensor
    in little-endian order (the common case), else of a converted copy."""
    t = t.contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    arr = np.ascontiguousarray(t.numpy().astype(np_dtype, copy=False))
    return arr.reshape(-1).view(np.uint8).data  # a memoryview of the array, no copy


def breakdown(data: bytes, limits: Limits | None = None, _depth: int = 0, check_crc: bool = True) -> dict[str, int]:
    """Bytes of an encoded message by category; `framing` is headers + names + CRC.
    The values sum to len(data). A lossless container (`ADCZ`) reports the breakdown of the
    message inside it plus `lossless` = len(container) - len(inner message), so payload, side and
    labels stay the uncompressed information bytes. Raises WireFormatError on malformed bytes,
    and on containers nested deeper than `limits.max_depth`. `check_crc=False` walks the headers
    only (every size still bounds-checked): a meter's view, when the receiver checks the CRC."""
    lim = get_limits(limits)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    if bytes(data[: len(CONTAINER_MAGIC)]) == CONTAINER_MAGIC:
        if _depth >= lim.max_depth:
            raise WireFormatError(f"lossless containers nested deeper than {lim.max_depth}")
        inner = decompress_container(data, limits=lim)
        out = breakdown(inner, lim, _depth + 1, check_crc)
        out["lossless"] = out.get("lossless", 0) + len(data) - len(inner)
        return out
    out = dict.fromkeys(BREAKDOWN_KEYS, 0)
    for _, category, nbytes, _ in _parse(data, materialize=False, limits=lim, check_crc=check_crc):
        out[category.name.lower()] += nbytes
    out["framing"] = len(data) - out["payload"] - out["side"] - out["labels"]
    return out


def _checked_body(data: bytes, limits: Limits, check_crc: bool = True) -> memoryview:
    """The message body (header and fields) after checking type, size, magic, CRC, version, count."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_message_bytes:
        raise WireFormatError(f"message of {len(data)} bytes exceeds the limit of {limits.max_message_bytes}")
    data = bytes(data)
    if len(data) < len(MAGIC) + 2 + 4:
        raise WireFormatError(f"message truncated: {len(data)} bytes is shorter than any header")
    if data[:4] != MAGIC:
        raise WireFormatError("not an adcbench message (bad magic bytes)")
    # A memoryview: slicing the body and its fields costs no copy (a message can be ~20 MB).
    body, (crc,) = memoryview(data)[:-4], struct.unpack("<I", data[-4:])
    if check_crc and crc32(body) != crc:
        raise WireFormatError("message corrupted or truncated (CRC mismatch)")
    version, count = struct.unpack_from("<BB", body, 4)
    if version != VERSION:
        raise WireFormatError(f"unsupported wire format version {version} (this build reads {VERSION})")
    if count > MAX_FIELDS:
        raise WireFormatError(f"field count {count} exceeds {MAX_FIELDS}")
    return body


class _Reader:
    """A cursor over a message body; every read is bounds-checked and names what it was reading."""

    def __init__(self, body: memoryview, pos: int, limits: Limits) -> None:
        self.body, self.pos, self.limits = body, pos, limits

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.body):
            raise WireFormatError(f"message truncated while reading {what}")
        chunk = self.body[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        """One unsigned byte (the reader's most frequent read: names, kinds, varints)."""
        if self.pos >= len(self.body):
            raise WireFormatError(f"message truncated while reading {what}")
        self.pos += 1
        return self.body[self.pos - 1]

    def uvar(self, what: str) -> int:
        """A canonical unsigned LEB128 below 2**32 (at most 5 bytes, no redundant zero groups)."""
        value = 0
        for i in range(5):
            b = self.byte(what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if (b == 0 and i > 0) or value >> 32 or uvar_nbytes(value) != i + 1:
                    raise WireFormatError(f"{what}: non-canonical or oversized varint")
                return value
        raise WireFormatError(f"{what}: varint longer than 5 bytes")

    def name(self, seen: set[str]) -> str:
        nlen = self.byte("field name length")
        try:
            name = bytes(self.take(nlen, "field name")).decode("ascii")
        except UnicodeDecodeError:
            raise WireFormatError("field name is not ASCII") from None
        if not _NAME_RE.match(name) or name in seen:
            raise WireFormatError(f"invalid or duplicate field name {name!r}")
        seen.add(name)
        return name

    def shape(self, name: str, ndim: int) -> tuple[int, tuple[int, ...], int]:
        """(dtype code or bit width, shape, element count) of a TENSOR or PACKED field."""
        code_or_bits = self.byte(f"header of {name!r}")
        shape = tuple(self.uvar(f"shape of {name!r}") for _ in range(ndim))
        numel = math.prod(shape)  # Python ints: no int64 overflow
        if numel > self.limits.max_elements:
            raise WireFormatError(f"field {name!r}: {numel} elements exceeds the limit of {self.limits.max_elements}")
        return code_or_bits, shape, numel


def _tensor_from(raw: memoryview, name: str, code: int, shape: tuple[int, ...]) -> torch.Tensor:
    torch_dtype, np_dtype = _DTYPES[code]
    arr = np.frombuffer(raw, dtype=np_dtype).reshape(shape)
    t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
    if torch_dtype == torch.bfloat16:
        return t.view(torch.bfloat16)
    if torch_dtype == torch.bool:
        if bool((t > 1).any()):
            raise WireFormatError(f"field {name!r}: bool values other than 0/1")
        return t.to(torch.bool)
    return t


def _parse_field(r: _Reader, name: str, materialize: bool) -> tuple[Category, int, Field | None]:
    kc = r.byte(f"kind of {name!r}")
    kind, category, ndim = _KINDS.get((kc >> 4) & 0x3), _CATEGORIES.get(kc >> 6), kc & 0x0F
    if kind is None or category is None:
        raise WireFormatError(f"field {name!r}: unknown kind/category byte {kc:#04x}")
    if ndim > (0 if kind == Kind.BYTES else MAX_NDIM):
        raise WireFormatError(f"field {name!r}: {ndim} dims exceeds the limit for its kind")
    if kind == Kind.BYTES:
        length = r.uvar(f"length of {name!r}")
        raw = r.take(length, f"data of {name!r}")
        return category, length, (Field(kind, category, bytes(raw)) if materialize else None)
    code_or_bits, shape, numel = r.shape(name, ndim)
    if kind == Kind.TENSOR:
        if code_or_bits not in _DTYPES:
            raise WireFormatError(f"field {name!r}: unknown dtype code {code_or_bits}")
        nbytes = numel * np.dtype(_DTYPES[code_or_bits][1]).itemsize
        raw = r.take(nbytes, f"data of {name!r}")
        value = _tensor_from(raw, name, code_or_bits, shape) if materialize else None
        return category, nbytes, (Field(kind, category, value) if value is not None else None)
    bits = code_or_bits
    if not 1 <= bits <= MAX_PACKED_BITS:
        raise WireFormatError(f"field {name!r}: packed width {bits} outside [1, {MAX_PACKED_BITS}]")
    nbytes = packed_nbytes(numel, bits)
    raw = r.take(nbytes, f"data of {name!r}")
    if not materialize:
        return category, nbytes, None
    vals = torch.from_numpy(unpack_bits(raw, numel, bits)).reshape(shape)
    return category, nbytes, Field(kind, category, vals, bits)


def _parse(
    data: bytes, materialize: bool, limits: Limits, check_crc: bool = True
) -> Iterator[tuple[str, Category, int, Field | None]]:
    """Walk and validate a message; yields (name, category, data bytes, Field or None)."""
    body = _checked_body(data, limits, check_crc)
    count = body[5]
    r, seen = _Reader(body, 6, limits), set[str]()
    for _ in range(count):
        name = r.name(seen)
        category, nbytes, field = _parse_field(r, name, materialize)
        yield name, category, nbytes, field
    if r.pos != len(body):
        raise WireFormatError(f"{len(body) - r.pos} unexpected trailing bytes after the last field")
