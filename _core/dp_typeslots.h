/* Type slots the compiled HTTP core rewrites once, at import, after Cython made the types:
 *
 * - the vectorcall entry of Middleware and _AsyncView (tp_vectorcall_offset, and
 *   Py_TPFLAGS_HAVE_VECTORCALL in tp_flags): Django calls a middleware with one argument
 *   and the view hook with four; through tp_call each call builds an argument tuple and
 *   parses it again, through the entry (a function pointer in each instance, at the type's
 *   tp_vectorcall_offset) the arguments are taken as they are. The usual call goes straight
 *   to the cdef _call; any other (keywords, another count) goes to tp_call, so its errors are
 *   Cython's. Python subclasses that keep __call__ inherit the entry from 3.12 on; before
 *   that (or when a subclass defines __call__) tp_call serves.
 *
 * Public C API only, on full PyTypeObject definitions (not the limited API): the fields are
 * the compiler's, from the Python.h the module is built with. What a new version can break
 * is how the interpreter uses them (a type made immutable, a slot cached elsewhere), so
 * tests/test_core_cpython.py reads the rewritten fields back through the interpreter's own
 * view of the type (type.__flags__, the instance's entry pointer, an await of _Done).
 * Checked against CPython 3.10, 3.11, 3.12, 3.13 and 3.13t (free-threaded). */
#ifndef DP_TYPESLOTS_H
#define DP_TYPESLOTS_H
#include <Python.h>
#include <stddef.h>

typedef PyObject *(*dp_call_impl)(PyObject *, PyObject *);
static dp_call_impl dp_middleware_impl, dp_view_impl;  /* set by dp_vectorcall_enable */

static inline PyObject *dp_vectorcall_via_tp_call(PyObject *self, PyObject *const *args, size_t nargsf,
                                           PyObject *kwnames) {
    Py_ssize_t n = PyVectorcall_NARGS(nargsf), nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, i;
    PyObject *tuple = PyTuple_New(n), *kwargs = NULL, *result = NULL;
    if (tuple == NULL) return NULL;
    for (i = 0; i < n; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    if (nk) {
        kwargs = PyDict_New();
        if (kwargs == NULL) goto done;
        for (i = 0; i < nk; i++)
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) goto done;
    }
    result = Py_TYPE(self)->tp_call(self, tuple, kwargs);
done:
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return result;
}

static inline PyObject *dp_middleware_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                          PyObject *kwnames) {
    if (kwnames == NULL && PyVectorcall_NARGS(nargsf) == 1) return dp_middleware_impl(self, args[0]);
    return dp_vectorcall_via_tp_call(self, args, nargsf, kwnames);
}

static inline PyObject *dp_view_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {  /* (request[, view_func, args, kwargs]) */
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && n >= 1 && n <= 4) return dp_view_impl(self, args[0]);
    return dp_vectorcall_via_tp_call(self, args, nargsf, kwnames);
}

static inline void *dp_vectorcall_entry(int view) {
    return view ? (void *)dp_view_vectorcall : (void *)dp_middleware_vectorcall;
}

static inline void dp_vectorcall_enable(PyObject *type, int view, void *impl, Py_ssize_t offset) {
    PyTypeObject *t = (PyTypeObject *)type;
    if (view) dp_view_impl = (dp_call_impl)impl; else dp_middleware_impl = (dp_call_impl)impl;
    t->tp_vectorcall_offset = offset;
    t->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    PyType_Modified(t);
}

/* What this header assumes, for the test to compare with what the interpreter reports. */
static inline PyObject *dp_typeslots_facts(PyObject *type) {
    PyTypeObject *t = (PyTypeObject *)type;
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:k,s:n,s:K,s:K}",
        "object_size", (Py_ssize_t)sizeof(PyObject),
        "offset_tp_vectorcall_offset", (Py_ssize_t)offsetof(PyTypeObject, tp_vectorcall_offset),
        "offset_tp_flags", (Py_ssize_t)offsetof(PyTypeObject, tp_flags),
        "tp_vectorcall_offset", t->tp_vectorcall_offset,
        "have_vectorcall", (unsigned long)Py_TPFLAGS_HAVE_VECTORCALL,
        "basicsize", t->tp_basicsize,
        "middleware_entry", (unsigned long long)(size_t)dp_middleware_vectorcall,
        "view_entry", (unsigned long long)(size_t)dp_view_vectorcall);
}
#endif
