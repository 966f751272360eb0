# The CPython-internal C of the compiled core, declared once for Cython: each header names the
# concern, the assumption and the CPython versions it was checked against, and
# tests/test_core_cpython.py proves the assumption on the running interpreter.
#
# Included (``include "dp_cpython.pxi"``) by the modules that use it; the headers are
# textual includes too (MANIFEST.in grafts _core, so the sdist carries them).

from cpython.object cimport PyObject

# dp_tls.h: one slot per thread (the After recorder's request; the features' owned state).
cdef extern from "dp_tls.h":
    ctypedef struct dp_http_slot:
        void *recorder
        PyObject *request
        PyObject *kind
        PyObject *match
        PyObject *view
    ctypedef struct dp_features_last:
        PyObject *request
        PyObject *state
    dp_http_slot *dp_http_slot_get() nogil
    dp_features_last *dp_features_last_get() nogil

# dp_str.h: two exact str compared by their PEP 393 storage.
cdef extern from "dp_str.h":
    bint dp_str_eq(object a, object b) nogil

# dp_typeslots.h: the vectorcall entries, _Done's tp_iternext, a call that saves no exception state.
cdef extern from "dp_typeslots.h":
    ctypedef PyObject *(*iternextfunc)(PyObject *)
    PyObject *dp_call1(PyObject *func, PyObject *arg)
    int dp_reraise() except -1
    void *dp_vectorcall_entry(bint view)
    void dp_vectorcall_enable(object type, bint view, void *impl, Py_ssize_t offset)
    void dp_set_iternext(object type, iternextfunc next)
    object dp_typeslots_facts(object type)
