"""The CPython-internal C of the compiled core, checked on the running interpreter.

Each header under ``_core/`` (``dp_typeslots.h``, ``dp_tls.h``) states what it
assumes of CPython and the versions it was checked against; these tests prove the assumption
here, so a new Python that breaks one fails a test rather than a user's request. The layout
is read the interpreter's way (``ctypes`` over the type object, ``type.__flags__``,
``__basicsize__``) and compared with what the header was compiled to use.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path

import pytest

#: Py_TPFLAGS_HAVE_VECTORCALL (Include/object.h, the same bit since 3.8).
HAVE_VECTORCALL = 1 << 11


_HTTP_C = None


def _c():
    return _HTTP_C


def _word(address: int) -> int:
    return ctypes.c_ssize_t.from_address(address).value


def _pointer(address: int) -> int:
    return ctypes.c_size_t.from_address(address).value


@pytest.fixture(autouse=True)
def facts(compiled_twin):
    # The compiled core only (a pure build skips; a compiled build without it fails).
    global _HTTP_C
    _HTTP_C = compiled_twin.http
    return _HTTP_C._cpython_facts()


def test_the_header_sees_the_type_object_the_interpreter_sees(facts):
    # PyTypeObject's fields as dp_typeslots.h was compiled to find them: the interpreter agrees
    # on the header size, on tp_basicsize and on tp_flags at those offsets.
    for name in ("Middleware", "_AsyncView"):
        cls = getattr(_c(), name)
        seen = facts[name]
        assert seen["object_size"] == object.__basicsize__
        assert seen["basicsize"] == cls.__basicsize__
        assert _word(id(cls) + seen["offset_tp_flags"]) & 0xFFFFFFFF == cls.__flags__ & 0xFFFFFFFF
        assert _word(id(cls) + seen["offset_tp_vectorcall_offset"]) == seen["tp_vectorcall_offset"]
        assert seen["have_vectorcall"] == HAVE_VECTORCALL


@pytest.mark.parametrize(
    ("name", "entry"), [("Middleware", "middleware_entry"), ("_AsyncView", "view_entry")]
)
def test_the_vectorcall_entry_is_in_place(facts, name, entry):
    # Rewritten at import: the flag is set, the offset lies inside the instance, and an instance
    # holds the header's entry there (what the interpreter calls).
    cls = getattr(_c(), name)
    seen = facts[name]
    assert cls.__flags__ & HAVE_VECTORCALL
    offset = seen["tp_vectorcall_offset"]
    assert object.__basicsize__ <= offset <= cls.__basicsize__ - ctypes.sizeof(ctypes.c_void_p)
    instance = cls.__new__(cls)
    assert _pointer(id(instance) + offset) == seen[entry]


def test_a_middleware_call_goes_through_the_entry_with_any_arguments():
    # One positional argument takes the entry; keywords or another count fall back to tp_call
    # (Cython's own argument errors).
    class Hooks(_c().Middleware):
        def _call_hooks(self, request):  # the extension path: no recorder
            return ("response", request)

    middleware = Hooks.__new__(Hooks)
    assert middleware("request") == ("response", "request")
    with pytest.raises(TypeError):
        middleware()
    with pytest.raises(TypeError):
        middleware("request", extra=1)


def test_each_thread_has_its_own_slot(facts):
    # dp_tls.h: the slot is thread-local (free-threaded builds too).
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_c()._cpython_facts()["slot"]))
    thread.start()
    thread.join()
    assert seen and seen[0] != facts["slot"]
    assert _c()._cpython_facts()["slot"] == facts["slot"]


def test_the_headers_name_the_versions_they_were_checked_against():
    core = Path(__file__).resolve().parent.parent / "_core"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for header in ("dp_typeslots.h", "dp_tls.h", "dp_immortal.h"):
        text = (core / header).read_text()
        assert "Checked against CPython" in text, header
        assert version in text, f"{header} was never checked against CPython {version}"
