"""Doubles as the writers spell them: the compiled one's own algorithm (``_core/dp_float.h``)
writes byte for byte what the pure twin writes from ``repr`` (prometheus_client's
``floatToGoString``), for the doubles where formatting turns (zeros, subnormals, the ends of
the range, every power of two and of ten, integers near 2**53, where ``repr`` and Go switch to
exponents) and for millions of random ones, checked by a C loop against CPython's ``repr``."""

from __future__ import annotations

import math
import struct
import sys

import pytest
from prometheus_client.utils import floatToGoString

from django_prometheus import text_format


def from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def bits_of(d: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", d))[0]


def edge_doubles() -> list[float]:
    """Where formatting turns, each with two neighbours on either side, both signs."""
    base = [
        0.0,
        5e-324,  # the smallest subnormal
        from_bits(0x000F_FFFF_FFFF_FFFF),  # the largest subnormal
        2.2250738585072014e-308,  # the smallest normal
        sys.float_info.max,
        *(math.ldexp(1.0, e) for e in range(-1074, 1024)),  # every power of two
        *(float(f"1e{e}") for e in range(-323, 309)),  # every power of ten
        *(float(2**53 + i) for i in range(-300, 301)),  # integers near 2**53
        *(float(2**54 + i) for i in range(-20, 21)),
        *(float(10**15 + i) for i in range(-20, 21)),
        *(2.0**50 + i / 4 for i in range(1, 40, 2)),  # ties: 17 digits ending in 5, rounded to even
        1e16,  # repr's switch to exponents
        9999999999999998.0,
        1e-4,  # and on the small side
        1e-5,
        0.00009999999999999999,
        1e6,  # Go's (floatToGoString's) switch
        999999.9999999999,
        0.1,
        0.2,
        0.3,
        1 / 3,
        2 / 3,
        math.pi,
        math.e,
        123456.789,
        1234567.891,
    ]
    out: list[float] = []
    for v in base:
        near = [v]
        for direction in (math.inf, -math.inf):
            x = v
            for _ in range(2):
                x = math.nextafter(x, direction)
                near.append(x)
        out.extend(near)
        out.extend(-x for x in near)
    return [*out, math.inf, -math.inf, math.nan]


EDGES = edge_doubles()


def test_every_edge_double_is_written_as_prometheus_client_writes_it(twin):
    for v in EDGES:
        assert twin.expo.format_float(v, text_format._EXP2) == floatToGoString(v), (v, bits_of(v))


def test_compiled_writes_the_edge_doubles_as_the_pure_twin_in_both_exponent_styles(compiled_twin, pure_twin):
    for exp2 in (True, False):
        for v in EDGES:
            assert compiled_twin.expo.format_float(v, exp2) == pure_twin.expo.format_float(v, exp2), (v, exp2)


@pytest.mark.parametrize(
    ("mode", "n"),
    [(0, 300_000), (1, 100_000), (2, 100_000)],
    ids=["random-bit-patterns", "short-decimals-and-neighbours", "gauge-like-values-and-neighbours"],
)
def test_random_doubles_agree_with_repr_without_the_fallback(compiled_twin, mode, n):
    # The C loop compares repr() (PyOS_double_to_string) with dp_repr, and the old repr-based
    # floatToGoString with dp_gofloat in both exponent styles. Fixed seeds: no fallback taken,
    # so the fast path is what agreed.
    wrong, first, fallbacks = compiled_twin.expo._check_floats(n, 20261207 + mode, mode)
    assert (wrong, first) == (0, None)
    assert fallbacks == 0


def test_every_bit_pattern_around_the_turning_points_agrees_with_repr(compiled_twin):
    check = compiled_twin.expo._check_floats
    starts = [0, 0x000F_FFFF_FFFF_FFFF - 2000]  # the smallest subnormals, the subnormal/normal seam
    starts += [(e << 52) - 8 for e in range(1, 2047)]  # each power of two (irregular spacing above)
    starts += [max(0, bits_of(float(f"1e{e}")) - 8) for e in range(-323, 309)]
    starts += [bits_of(x) - 8 for x in (1e16, 1e-4, 1e6, float(2**53))]
    for start in starts:
        n = 4000 if start < 0x0010_0000_0000_0000 else 17
        for sign in (0, 1 << 63):
            wrong, first, _ = check(n, start | sign, 3)
            assert (wrong, first) == (0, None), hex(start | sign)


def test_the_repr_fallback_writes_the_same_text(compiled_twin):
    # What 128 bits cannot decide goes through CPython's repr, read back: every double forced
    # through that path still agrees.
    for mode in (0, 1, 2):
        wrong, first, fallbacks = compiled_twin.expo._check_floats(10_000, 7 + mode, mode, True)
        assert (wrong, first) == (0, None)
        assert fallbacks > 0
