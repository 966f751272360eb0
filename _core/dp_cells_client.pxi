# The head both HTTP modules (_http_c, _features_c) share: the cells' C entry points and types.
#
# Included (``include "dp_cells_client.pxi"``) near the top of the module, before
# ``dp_helpers.pxi`` (whose helpers count through ``_api`` and test these types).

from cpython.pycapsule cimport PyCapsule_GetPointer

from . import _cells_c

# The cells' and the features' C entry points (dp_cells_api, dp_features_api).
include "dp_api.pxi"

cdef dp_cells_api *_api = <dp_cells_api *> PyCapsule_GetPointer(
    _cells_c.C_API, "django_prometheus._core._cells_c.C_API")
cdef type _Counter = _cells_c.Counter
cdef type _Histogram = _cells_c.Histogram
# Multiprocess cells: the same C entry points write them (through their file slots).
cdef type _MpCounter = _cells_c._MpCounter
cdef type _MpHistogram = _cells_c._MpHistogram
cdef type _Gauge = _cells_c.Gauge
