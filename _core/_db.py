"""The compiled DB cursor fast path or its pure-Python twin, as the cells were picked (``_dispatch``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells
from ._dispatch import pick

if TYPE_CHECKING:
    from . import _db_py as _impl
else:
    _impl = pick("_db", follow=_cells)

#: True when the compiled fast path is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_db_c")

instrument_execute = _impl.instrument_execute
instrument_executemany = _impl.instrument_executemany
instrument_wrapper = _impl.instrument_wrapper
#: The clock the cursor fast path times queries with (transactions are timed with it too).
clock = _impl.clock

__all__ = ["USE_EXTENSIONS", "clock", "instrument_execute", "instrument_executemany", "instrument_wrapper"]
