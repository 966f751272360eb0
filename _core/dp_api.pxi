# The C entry points the compiled modules hand each other through capsules, declared once.
#
# Included (``include "dp_api.pxi"``) by every module that exports or calls them: a .pxd
# beside the modules would be ignored (this folder installs under another package path),
# a textual include is not. Entries are only ever added at the end of a struct, so a module
# built against an older copy still finds the entries it knows at the same offsets.

# ``_cells_c.C_API``: count into a cell with one C call, not a method lookup. Callers check a
# cell's type once (``type(cell) is Counter``) before calling.
ctypedef void (*dp_cell_add)(object, double) noexcept

ctypedef double (*dp_cell_get)(object) noexcept
# (cell, cumulative counts out, room in it, sum out, flags out: 1 a native part, 2 exemplars)
# -> the cell's number of buckets.
ctypedef Py_ssize_t (*dp_histogram_get)(object, double *, Py_ssize_t, double *, int *) noexcept

cdef struct dp_cells_api:
    dp_cell_add counter_inc
    dp_cell_add histogram_observe
    dp_cell_add gauge_add  # the in-flight gauge (a negative amount decrements)
    # The exposition writer's reads (``_expo_c``), for cells of these types or subtypes:
    dp_cell_get counter_get
    dp_cell_get gauge_get
    dp_histogram_get histogram_get
    # A Counter's or Histogram's (or subtype's) ``created``, formatted by the writer at each scrape.
    dp_cell_get created_get

# ``_features_c.SEAM``: the middlewares' calls into the compiled opt-in features (``_http_c``
# calls them for an ``_features_c.Features``, the Python protocol for anything else).
ctypedef object (*dp_seam_begin)(object, object, bint, int *)
ctypedef object (*dp_seam_end)(object, object, object, object, bint)
ctypedef int (*dp_seam_abort)(object, object, object, bint) except -1
ctypedef int (*dp_seam_excluded)(object, object) except -1
ctypedef int (*dp_seam_view)(object, object, object, object) except -1

cdef struct dp_features_api:
    dp_seam_begin begin  # flags out: 1 defer, 2 call abort(SKIP) when the request is done
    dp_seam_end end
    dp_seam_abort abort
    dp_seam_excluded excluded
    dp_seam_view view  # excluded, from the view hook: (features, request, match, match.view_name)

# ``_native_c.C_API``: a classic histogram cell's native part counts with one C call.
cdef struct dp_native_api:
    dp_cell_add observe
