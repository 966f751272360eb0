"""Pick the compiled DB cursor fast path or its pure-Python twin, once, at import time.

Same rule as ``_cells``: pure when ``DJANGO_PROMETHEUS_NO_EXTENSIONS`` is set,
off CPython, or under type checking; otherwise compiled, falling back to the
twin only if the extension is missing from this build. Both follow the core
``_cells`` picked, so a compiled fast path never drives pure cells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells

if TYPE_CHECKING or not _cells.USE_EXTENSIONS:
    from . import _db_py as _impl
else:
    try:
        from . import _db_c as _impl  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover - built before the DB fast path existed
        from . import _db_py as _impl  # type: ignore[no-redef]

#: True when the compiled fast path is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_db_c")

NOARG = _impl.NOARG
CountingIterator = _impl.CountingIterator
clock = _impl.clock
instrument_execute = _impl.instrument_execute
instrument_executemany = _impl.instrument_executemany
instrument_wrapper = _impl.instrument_wrapper

__all__ = [
    "NOARG",
    "USE_EXTENSIONS",
    "CountingIterator",
    "clock",
    "instrument_execute",
    "instrument_executemany",
    "instrument_wrapper",
]
