"""Receiver limits: every size a sender declares is checked against these before any allocation.

The defaults sit well above the largest legitimate message of the benchmark (about 19 MB: `none`
at B = 128, n = 197, d = 192) and far below what would hurt a host. `set_limits` changes them
process-wide (e.g. for larger batches); every decoding function also takes a `limits` argument.
"""

from __future__ import annotations

import dataclasses

from adcbench.errors import WireFormatError


@dataclasses.dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 1 << 28  # 256 MiB: encoded message, container or decompressed body
    max_elements: int = 1 << 28  # elements of one TENSOR/PACKED field
    max_depth: int = 4  # lossless containers nested inside each other


_current = Limits()


def get_limits(limits: Limits | None = None) -> Limits:
    return _current if limits is None else limits


def set_limits(limits: Limits) -> Limits:
    """Replace the process-wide limits; returns the previous ones."""
    global _current
    prev, _current = _current, limits
    return prev


def uvar(n: int) -> bytes:
    """Unsigned LEB128 of 0 <= n < 2**32 (1 byte below 128, 2 below 16,384, ...)."""
    if not 0 <= n < 1 << 32:
        raise ValueError(f"{n} does not fit a wire varint (0 <= n < 2**32)")
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def uvar_nbytes(n: int) -> int:
    return max(1, -(-n.bit_length() // 7))


def check_size(nbytes: int, what: str, limits: Limits | None = None) -> None:
    lim = get_limits(limits).max_message_bytes
    if nbytes > lim:
        raise WireFormatError(f"{what}: {nbytes} bytes exceeds the limit of {lim}")
