"""The compiled opt-in HTTP features or their pure-Python twin, as the cells were picked (``_dispatch``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells
from ._dispatch import pick

if TYPE_CHECKING:
    from . import _extras_py as _impl
else:
    _impl = pick("_extras", follow=_cells)

#: True when the compiled features are the ones in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_extras_c")

DO_NOT_TRACK = _impl.DO_NOT_TRACK
INNER = _impl.INNER
KEY = _impl.KEY
PATH_CACHE_MAX = _impl.PATH_CACHE_MAX
QUEUE_MAX_SECONDS = _impl.QUEUE_MAX_SECONDS
ROOT = _impl.ROOT
UNMATCHED = _impl.UNMATCHED
Extras = _impl.Extras
SpanIds = _impl.SpanIds
owned = _impl.owned
queue_seconds = _impl.queue_seconds
route = _impl.route
status_label = _impl.status_label

__all__ = [
    "DO_NOT_TRACK",
    "INNER",
    "KEY",
    "PATH_CACHE_MAX",
    "QUEUE_MAX_SECONDS",
    "ROOT",
    "UNMATCHED",
    "USE_EXTENSIONS",
    "Extras",
    "SpanIds",
    "owned",
    "queue_seconds",
    "route",
    "status_label",
]
