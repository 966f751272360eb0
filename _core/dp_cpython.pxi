# The CPython-internal C of the compiled core, declared once for Cython: each header names the
# concern, the assumption and the CPython versions it was checked against, and
# tests/test_core_cpython.py proves the assumption on the running interpreter.
#
# Included (``include "dp_cpython.pxi"``) by the modules that use it; the headers are
# textual includes too (MANIFEST.in grafts _core, so the sdist carries them).

from cpython.object cimport PyObject

# dp_tls.h: one slot per thread (what the After recorder's _begin learnt of a request).
cdef extern from "dp_tls.h":
    ctypedef struct dp_http_slot:
        void *recorder
        PyObject *request
        PyObject *kind
        PyObject *match
        PyObject *view
    dp_http_slot *dp_http_slot_get() nogil

# dp_typeslots.h: the vectorcall entries of Middleware and _AsyncView.
cdef extern from "dp_typeslots.h":
    void *dp_vectorcall_entry(bint view)
    void dp_vectorcall_enable(object type, bint view, void *impl, Py_ssize_t offset)
    object dp_typeslots_facts(object type)
