"""The position code of sparse payloads: exact round trip, near log2 C(D, k), canonical only."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adcbench.errors import WireFormatError
from adcbench.wire import gap_decode, gap_encode
from adcbench.wire.gaps import gap_code_bound


def log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def random_sets(rows: int, dim: int, kk: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(np.argsort(rng.random((rows, dim)), axis=1)[:, :kk], axis=1)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 300), st.data())
def test_round_trip_within_the_bound(rows: int, dim: int, data) -> None:
    kk = data.draw(st.integers(0, dim // 2))
    pos = random_sets(rows, dim, kk, data.draw(st.integers(0, 9)))
    code = gap_encode(pos, dim)
    assert len(code) <= gap_code_bound(rows, kk, dim)
    assert (gap_decode(code, rows, kk, dim) == pos).all()


@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.1, 0.2, 0.5])
def test_near_the_information_content_at_the_paper_shapes(ratio: float) -> None:
    dim = 197 * 192
    kk = round(ratio * dim)
    pos = random_sets(16, dim, kk)
    bits = 8 * len(gap_encode(pos, dim))
    info = 16 * log2_binomial(dim, kk)
    assert info <= bits <= 1.0065 * info + 128  # bitmap 2.1x and 16-bit indices 3.4x at 0.1


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(2, 64), st.integers(1, 8), st.binary(max_size=40))
def test_only_canonical_codes_decode(rows: int, dim: int, kk: int, junk: bytes) -> None:
    """Any byte string either raises WireFormatError or is the one code of a valid position set,
    i.e. it re-encodes to itself (out-of-range, unsorted or duplicate sets cannot be expressed)."""
    kk = min(kk, dim // 2)
    try:
        pos = gap_decode(junk, rows, kk, dim)
    except WireFormatError:
        return
    assert pos.shape == (rows, kk) and (pos >= 0).all() and (pos < dim).all()
    assert (np.diff(pos, axis=1) > 0).all()
    assert gap_encode(pos, dim) == junk


def test_corruptions_of_a_real_code_raise_or_stay_canonical() -> None:
    dim, kk = 500, 40
    code = gap_encode(random_sets(3, dim, kk), dim)
    variants = [code[:cut] for cut in range(len(code))] + [code + b"\0\0\0\0", code + b"\1"]
    for i in range(len(code)):
        for bit in (0, 3, 7):
            bad = bytearray(code)
            bad[i] ^= 1 << bit
            variants.append(bytes(bad))
    rejected = 0
    for bad in variants:
        try:
            pos = gap_decode(bad, 3, kk, dim)
        except WireFormatError:
            rejected += 1
            continue
        assert gap_encode(pos, dim) == bad  # another valid set's one code, never an ambiguous one
    assert rejected > 0.8 * len(variants)


def test_a_forged_overlong_code_is_refused_before_unpacking() -> None:
    with pytest.raises(WireFormatError, match="longer than any valid code"):
        gap_decode(b"\xff" * 10_000_000, 1, 3, 100)
