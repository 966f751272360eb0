"""The compiled opt-in HTTP features or their pure-Python twin, as the cells were picked (``_dispatch``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells
from ._dispatch import pick

if TYPE_CHECKING:
    from . import _features_py as _impl
else:
    _impl = pick("_features", follow=_cells)

#: True when the compiled features are the ones in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_features_c")

DO_NOT_TRACK = _impl.DO_NOT_TRACK
ROOT = _impl.ROOT
UNMATCHED = _impl.UNMATCHED
Features = _impl.Features
SpanIds = _impl.SpanIds
route = _impl.route

__all__ = [
    "DO_NOT_TRACK",
    "ROOT",
    "UNMATCHED",
    "USE_EXTENSIONS",
    "Features",
    "SpanIds",
    "route",
]
