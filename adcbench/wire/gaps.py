"""Gap coding of sorted position sets near log2 C(D, kk) bits: N rows of kk strictly increasing
positions in [0, D).

A row's positions p_1 < ... < p_kk become gaps g_1 = p_1, g_i = p_i - p_(i-1) - 1 >= 0. For a
uniformly random kk-subset the gaps are nearly geometric with p = kk/D. Each gap splits as in
Golomb's code, g = q·m + r with m = ceil(log(2 - p) / -log(1 - p)) (Gallager & van Voorhis): the
quotient q is sent in unary, which is within 0.003 bits of its entropy at this m, and the
remainder r in [0, m) is entropy-coded (rANS, `constriction`) under the truncated geometric
distribution P(r) ∝ (1 - p)^r, which plain Golomb codes in truncated binary (about 1 % above the
information content; measured 0.05-0.1 % with rANS, tests/test_wire_gaps.py). m and the
model are functions of (kk, D), which both sides know, so nothing but the code is sent:

    gaps := U | A
    U    := for each gap, q one-bits then a zero-bit, LSB-first, zero-padded to a byte
            (exactly N·kk zero-bits end the quotients)
    A    := the rANS words (u32 little-endian) of the N·kk remainders; empty when m = 1

The decoder accepts only the canonical encoding: zero padding, A a whole number of words that
decodes to exactly N·kk remainders with nothing left over, every row's last position below D
(so positions are in range, strictly increasing and hence distinct by construction). Before
unpacking anything it bounds the length by the longest valid code, so a forged field cannot make
it allocate more than about D bits per row.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from adcbench.errors import WireFormatError

from .bits import packed_nbytes

_MAX_SYMBOL_BITS = 24  # constriction's categorical precision: no symbol costs more than 24 bits
_ANS_SLACK_BITS = 96  # final 64-bit state plus word rounding
_ZERO_BITS = (8 - np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)).astype(np.uint8)


def golomb_parameter(kk: int, dim: int) -> int:
    """Golomb's m for kk positions out of `dim` (Gallager & van Voorhis, 1975)."""
    if kk <= 0 or kk >= dim:
        return 1
    p = kk / dim
    return max(1, math.ceil(math.log(2 - p) / -math.log1p(-p)))


def _remainder_probs(kk: int, dim: int, m: int) -> np.ndarray:
    ratio = 1 - kk / dim
    w = ratio ** np.arange(m, dtype=np.float64)
    return w / w.sum()


def _model(kk: int, dim: int, m: int) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(_remainder_probs(kk, dim, m), perfect=False)


def _gaps(pos: np.ndarray) -> np.ndarray:
    pos = np.asarray(pos, dtype=np.int32 if pos.shape[1] and int(pos[:, -1].max()) < 2**31 else np.int64)
    gaps = np.empty_like(pos)  # int32 where positions fit: half the memory traffic of int64
    gaps[:, :1] = pos[:, :1]
    gaps[:, 1:] = np.diff(pos, axis=1) - 1
    return gaps.ravel()


def _unary_max_bits(rows: int, kk: int, dim: int, m: int) -> int:
    return rows * ((dim - kk) // m + kk)


def gap_code_bound(rows: int, kk: int, dim: int) -> int:
    """The most bytes `gap_encode` can produce for rows×kk positions in [0, dim): unary quotients
    summing to at most (dim - kk) / m per row, and every remainder at its least likely value."""
    n = rows * kk
    if n == 0:
        return 0
    m = golomb_parameter(kk, dim)
    unary = packed_nbytes(_unary_max_bits(rows, kk, dim, m), 1)
    if m == 1:
        return unary
    worst = -math.log2(float(_remainder_probs(kk, dim, m).min())) + 0.01  # quantization slack
    return unary + 4 * math.ceil((n * min(worst, _MAX_SYMBOL_BITS) + _ANS_SLACK_BITS) / 32)


def _decode_bound(rows: int, kk: int, dim: int) -> int:
    """Longest code the decoder will read (every remainder at the coder's 24-bit maximum)."""
    m = golomb_parameter(kk, dim)
    unary = packed_nbytes(_unary_max_bits(rows, kk, dim, m), 1)
    return unary + (0 if m == 1 else 4 * math.ceil((rows * kk * _MAX_SYMBOL_BITS + _ANS_SLACK_BITS) / 32))


def gap_encode(pos: np.ndarray, dim: int) -> bytes:
    """Code rows×kk rows of strictly increasing positions in [0, dim)."""
    rows, kk = pos.shape
    if rows * kk == 0:
        return b""
    m = golomb_parameter(kk, dim)
    g = _gaps(pos)
    q = g // m
    zeros = np.cumsum(q + 1, dtype=np.int64) - 1  # where each quotient's terminating zero-bit lies
    unary = np.ones(int(zeros[-1]) + 1, dtype=np.uint8)
    unary[zeros] = 0
    out = np.packbits(unary, bitorder="little").tobytes()
    if m > 1:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse((g - q * m).astype(np.int32, copy=False), _model(kk, dim, m))
        out += coder.get_compressed().astype("<u4").tobytes()
    return out


def gap_code_nbytes(pos: np.ndarray, dim: int) -> int:
    """Size of `gap_encode(pos, dim)`."""
    return len(gap_encode(pos, dim))


def gap_decode(data: bytes | memoryview, rows: int, kk: int, dim: int) -> np.ndarray:
    """Inverse of `gap_encode`: rows×kk int64 positions; WireFormatError on any non-canonical,
    truncated, overlong or out-of-range code."""
    n = rows * kk
    if n == 0:
        if len(data):
            raise WireFormatError("gap code: bytes for an empty position set")
        return np.zeros((rows, kk), dtype=np.int64)
    if len(data) > _decode_bound(rows, kk, dim):
        raise WireFormatError(f"gap code: {len(data)} bytes is longer than any valid code")
    m = golomb_parameter(kk, dim)
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    # U ends in the byte holding the n-th zero-bit: count zero-bits per byte (a table lookup), so
    # only U's bits are unpacked and searched, not the remainder words after it.
    per_byte = np.cumsum(_ZERO_BITS[raw], dtype=np.int64)
    if not per_byte.size or int(per_byte[-1]) < n:
        raise WireFormatError("gap code truncated in its quotients")
    end = int(np.searchsorted(per_byte, n)) + 1
    zeros = np.flatnonzero(np.unpackbits(~raw[:end], bitorder="little").view(bool))[:n]
    last = int(zeros[-1])
    un = last // 8 + 1  # bytes of U
    if int(raw[un - 1]) >> (last % 8 + 1):
        raise WireFormatError("gap code: nonzero padding after the quotients")
    q = np.diff(zeros, prepend=-1) - 1
    r = _remainders(raw[un:], n, kk, dim, m)
    g = (q * m + r).reshape(rows, kk)
    if int(g.max()) >= dim:
        raise WireFormatError(f"gap code: a position beyond {dim}")
    pos = np.cumsum(g + 1, axis=1) - 1
    if int(pos[:, -1].max()) >= dim:
        raise WireFormatError(f"gap code: positions must lie in [0, {dim})")
    return pos


def _remainders(words: np.ndarray, n: int, kk: int, dim: int, m: int) -> np.ndarray:
    if m == 1:
        if words.size:
            raise WireFormatError("gap code: trailing bytes after the quotients")
        return np.zeros(n, dtype=np.int64)
    if words.size % 4:
        raise WireFormatError("gap code: remainder stream is not a whole number of 32-bit words")
    compressed = words.view("<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(compressed)
        r = coder.decode(_model(kk, dim, m), n)
        empty = coder.is_empty()
    except Exception as exc:  # constriction rejects some word sequences outright
        raise WireFormatError(f"gap code: remainder stream is invalid ({exc})") from None
    if not empty:
        raise WireFormatError("gap code: remainder stream has words left over")
    return r.astype(np.int64)
