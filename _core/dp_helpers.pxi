# The inline helpers both HTTP modules (_http_c, _features_c) count and log with, written once.
#
# Included (``include "dp_helpers.pxi"``) after ``dp_cells_client.pxi`` (``_api`` and the cells'
# types) and after the including module has defined ``_NO_CELL`` (a disabled family's cell),
# ``logger`` and ``_FAILURE`` (its failure message, with one %s).
#
# ``except -1`` rather than ``void``: a void C function that may raise makes every call site ask
# ``PyErr_Occurred()`` (a thread-state lookup), about fifty times a request. A disabled family's
# cell is skipped after the cell-type test, so an enabled family pays nothing for it.

cdef inline int _inc(object cell) except -1:
    if type(cell) is _Counter or type(cell) is _MpCounter:
        _api.counter_inc(cell, 1.0)
    elif cell is not _NO_CELL:
        cell.inc()
    return 0


cdef inline int _observe(object cell, double amount) except -1:
    if type(cell) is _Histogram or type(cell) is _MpHistogram:
        _api.histogram_observe(cell, amount)
    elif cell is not _NO_CELL:
        cell.observe(amount)
    return 0


cdef inline int _gauge_add(object cell, double amount) except -1:
    if type(cell) is _Gauge:
        _api.gauge_add(cell, amount)
    elif cell is _NO_CELL:
        pass
    elif amount > 0:
        cell.inc(amount)
    else:
        cell.dec(-amount)
    return 0


cdef void _log_failure(str where) noexcept:
    logger.exception(_FAILURE, where)
