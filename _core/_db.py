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
# Per-request accounting (``django_prometheus.db.per_request``): the queries that
# ran in this context between begin and end, fed by the three functions above.
begin_request = _impl.begin_request
account_statement = _impl.account_statement
end_request = _impl.end_request
REPEAT_THRESHOLD: int = _impl.REPEAT_THRESHOLD
MAX_STATEMENTS: int = _impl.MAX_STATEMENTS

__all__ = [
    "MAX_STATEMENTS",
    "REPEAT_THRESHOLD",
    "USE_EXTENSIONS",
    "account_statement",
    "begin_request",
    "end_request",
    "instrument_execute",
    "instrument_executemany",
    "instrument_wrapper",
]
