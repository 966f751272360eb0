"""Pick the compiled per-operation cache recording or its pure-Python twin, once, at import time.

Same rule as ``_cells``, and it follows the core ``_cells`` picked, so compiled
recorders never drive pure cells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells
from ._dispatch import pick

if TYPE_CHECKING:
    from . import _cache_py as _impl
else:
    _impl = pick("_cache", follow=_cells)

#: True when the compiled recorders are the ones in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_cache_c")

CURRENT = _impl.CURRENT
MISSING = _impl.MISSING
Call = _impl.Call
begin_request = _impl.begin_request
clock = _impl.clock
count_get = _impl.count_get
count_get_many = _impl.count_get_many
end_request = _impl.end_request
instrument_get = _impl.instrument_get
instrument_get_many = _impl.instrument_get_many
instrument_has_key = _impl.instrument_has_key
instrument_op = _impl.instrument_op
note_failure = _impl.note_failure
observe = _impl.observe

__all__ = [
    "CURRENT",
    "MISSING",
    "USE_EXTENSIONS",
    "Call",
    "begin_request",
    "clock",
    "count_get",
    "count_get_many",
    "end_request",
    "instrument_get",
    "instrument_get_many",
    "instrument_has_key",
    "instrument_op",
    "note_failure",
    "observe",
]
