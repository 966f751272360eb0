/* Comparing two exact str objects by their PEP 393 storage: no hash, no rich comparison.
 *
 * The assumption: CPython keeps every str in its canonical form (the narrowest kind that
 * holds its widest character), so equal text has equal length, kind and bytes. True of every
 * str since PEP 393 (3.3) once the legacy wstr representation was gone from the objects we
 * compare (3.12 removed it; before, PyUnicode_READY made it canonical and exact str built by
 * the interpreter is always ready). Checked against CPython 3.10, 3.11, 3.12, 3.13 and 3.13t;
 * tests/test_core_cpython.py compares it with == over strings of every kind. */
#ifndef DP_STR_H
#define DP_STR_H
#include <Python.h>
#include <string.h>

static inline int dp_str_eq(PyObject *a, PyObject *b) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    if (n != PyUnicode_GET_LENGTH(b) || kind != (int)PyUnicode_KIND(b)) return 0;
    return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
}
#endif
