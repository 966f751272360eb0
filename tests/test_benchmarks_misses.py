"""benchmarks._misses: the offsets its gdb script reads are this interpreter's."""

from __future__ import annotations

import ctypes
import sys

import pytest

from benchmarks import _misses

pytestmark = pytest.mark.skipif(
    sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 12) or sys.maxsize <= 2**32,
    reason="the offsets are 64-bit CPython 3.12's",
)


def test_the_type_name_offset_reads_tp_name():
    assert ctypes.c_char_p.from_address(id(dict) + _misses.TP_NAME).value == b"dict"


def test_the_ascii_data_offset_reads_a_compact_str():
    name = "".join(["dp_", "misses"])  # not a constant: a str of its own
    assert ctypes.string_at(id(name) + _misses.ASCII_DATA, len(name)) == name.encode()


def test_the_version_tag_offset_reads_the_tag_a_lookup_assigns():
    def tag(cls: type) -> int:
        return ctypes.c_uint.from_address(id(cls) + _misses.VERSION_TAG).value

    class First:
        x = 1

    class Second:
        x = 2

    # Tags are handed out on a type's first lookup, one after the other.
    assert tag(First) == tag(Second) == 0
    assert First().x + Second().x == 3
    assert tag(First) > 0
    assert tag(Second) == tag(First) + 1
