"""The compiled cells or their pure-Python twin, picked once at import (rule: ``_dispatch``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._dispatch import NO_EXTENSIONS, pick

if TYPE_CHECKING:
    from . import _cells_py as _impl
else:
    _impl = pick("_cells")

#: True when the compiled core is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_cells_c")

Counter = _impl.Counter
Gauge = _impl.Gauge
Histogram = _impl.Histogram
Family = _impl.Family
MultiProcessStore = _impl.MultiProcessStore

__all__ = [
    "NO_EXTENSIONS",
    "USE_EXTENSIONS",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MultiProcessStore",
]
