"""Bit packing: unsigned integers of any width 1..32, LSB-first, exactly n bits per value.

A PACKED field's body is made here, so an n-bit code or a log2(N)-bit index costs exactly n bits.
"""

from __future__ import annotations

import numpy as np


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
# Up to this many bits (labels, cluster ids, small index sets) a field goes through one bit per
# byte: three numpy calls instead of the group loop's ~40, which dominate at these sizes.
_SMALL_BITS = 1 << 16


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
        flat = np.zeros(-(-v.size // per) * per, dtype=np.uint8)
        flat[: v.size] = v
        w = flat.reshape(-1, per)
        out = w[:, 0].copy()
        for p in range(1, per):
            out |= w[:, p] << np.uint8(p * bits)
        return out.tobytes()
    count = v.size
    if count * bits <= _SMALL_BITS:
        stream = (v.astype(np.uint64)[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
        return np.packbits(stream.astype(np.uint8).ravel(), bitorder="little").tobytes()
    groups = -(-count // 8)
    flat64 = np.zeros(groups * 8, dtype=np.uint64)
    flat64[:count] = v
    g = flat64.reshape(groups, 8)
    out = np.zeros((groups, bits), dtype=np.uint8)
    for p, first, off in _group_layout(bits):
        w = g[:, p] << np.uint64(off)
        for j in range((off + bits + 7) // 8):
            out[:, first + j] |= ((w >> np.uint64(8 * j)) & np.uint64(0xFF)).astype(np.uint8)
    return out.tobytes()[: packed_nbytes(count, bits)]


def unpacked_dtype(bits: int) -> np.dtype:
    """The smallest signed-safe integer type for `bits`-bit values (uint8 up to 8 bits), so a
    1-bit field does not unpack to 8 bytes per value (64x its wire size)."""
    if bits <= 8:
        return np.dtype(np.uint8)
    if bits <= 15:
        return np.dtype(np.int16)
    return np.dtype(np.int32) if bits <= 31 else np.dtype(np.int64)


def unpack_bits(data: bytes | memoryview, count: int, bits: int) -> np.ndarray:
    """`count` values of `bits` bits, as `unpacked_dtype(bits)`."""
    dt = unpacked_dtype(bits)
    if bits in (8, 16, 32):
        return np.frombuffer(data, dtype=f"<u{bits // 8}", count=count).astype(dt)
    buf = np.frombuffer(data, dtype=np.uint8)
    if bits == 1:
        return np.unpackbits(buf, count=count, bitorder="little")
    if bits in (2, 4):
        per, mask = 8 // bits, np.uint8((1 << bits) - 1)
        out = np.empty((len(buf), per), dtype=np.uint8)
        for p in range(per):
            np.bitwise_and(buf >> np.uint8(p * bits), mask, out=out[:, p])
        return out.ravel()[:count].copy()
    if count * bits <= _SMALL_BITS:
        stream = np.unpackbits(buf, count=count * bits, bitorder="little").reshape(count, bits)
        return (stream.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))).astype(dt)
    groups = -(-count // 8)
    full = np.zeros(groups * bits, dtype=np.uint8)
    n = min(len(buf), full.size)
    full[:n] = buf[:n]
    rows = full.reshape(groups, bits)
    mask = np.uint64((1 << bits) - 1)
    out = np.empty((groups, 8), dtype=dt)
    for p, first, off in _group_layout(bits):
        w = np.zeros(groups, dtype=np.uint64)
        for j in range((off + bits + 7) // 8):
            w |= rows[:, first + j].astype(np.uint64) << np.uint64(8 * j)
        out[:, p] = ((w >> np.uint64(off)) & mask).astype(dt)
    return out.ravel()[:count]
