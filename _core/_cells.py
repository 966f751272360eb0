"""Pick the compiled cells or their pure-Python twin, once, at import time.

Pure when ``DJANGO_PROMETHEUS_NO_EXTENSIONS`` is set (to anything but "" or
"0"), off CPython, or under type checking; otherwise compiled, falling back to
the twin only if the extension is missing from this build.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

NO_EXTENSIONS = os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS", "") not in ("", "0")

if TYPE_CHECKING or NO_EXTENSIONS or sys.implementation.name != "cpython":
    from . import _cells_py as _impl
else:
    try:
        from . import _cells_c as _impl  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover - a pure build, or the extension was not compiled
        from . import _cells_py as _impl  # type: ignore[no-redef]

#: True when the compiled core is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_cells_c")

MISSING = _impl.MISSING
Counter = _impl.Counter
Gauge = _impl.Gauge
Histogram = _impl.Histogram
Family = _impl.Family
MultiProcessStore = _impl.MultiProcessStore
instrument_get = _impl.instrument_get
record_get_many = _impl.record_get_many

__all__ = [
    "MISSING",
    "USE_EXTENSIONS",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MultiProcessStore",
    "instrument_get",
    "record_get_many",
]
