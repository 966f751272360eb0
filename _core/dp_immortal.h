/* Making an object that threads share immortal, on free-threaded CPython 3.13t.
 *
 * A contended child's reference count is contended too: `child.inc()` from two threads writes
 * the child's header on each call (an atomic add to its shared count from every thread but the
 * one that made it), and that cache line then moves between cores as the cell's own would.
 * CPython 3.13t gives the objects threads share for the rest of the run (functions, code,
 * types, modules: the ones 3.14 counts by deferred reference counting) immortality once a
 * second thread starts; a striped cell or native part gets the same. Only the local count is
 * written, with one atomic store of the immortal value (3.13t's _Py_IsImmortal reads
 * ob_ref_local == UINT32_MAX): a racing Py_INCREF/Py_DECREF by the owning thread may overwrite
 * it with its own new count, which leaves the object exactly as counted as before (and mortal);
 * the shared count is left to its writers. The object is then never freed (a family's remove()
 * of a hot child leaks its cell and stripes). 3.14t's deferred counting needs a GC type, which
 * a counter is not: nothing is done there, nor on builds with the GIL (nothing stripes).
 *
 * Checked against CPython 3.10, 3.11, 3.12, 3.13 (with the GIL: does nothing) and 3.13t
 * (tests/test_cells_contention.py::test_a_striped_child_is_immortal_on_free_threaded_3_13). */
#ifndef DP_IMMORTAL_H
#define DP_IMMORTAL_H
#include <Python.h>

#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000
static inline void dp_make_shared(PyObject *op) {
    _Py_atomic_store_uint32_relaxed(&op->ob_ref_local, UINT32_MAX);
}
#else
static inline void dp_make_shared(PyObject *op) { (void)op; }
#endif
#endif
