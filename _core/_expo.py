"""Pick the compiled exposition writer or its pure-Python twin, once, at import time.

The one rule of ``_dispatch``: pure when ``DJANGO_PROMETHEUS_NO_EXTENSIONS`` is
set, off CPython, or under type checking; otherwise compiled, falling back to
the twin only if the extension is missing from this build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._dispatch import pick

if TYPE_CHECKING:
    from . import _expo_py as _impl
else:
    _impl = pick("_expo")

#: True when the compiled writer is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_expo_c")

COUNTER, GAUGE, HISTOGRAM = _impl.COUNTER, _impl.GAUGE, _impl.HISTOGRAM
VALUE, BUCKET, COUNT, SUM, CREATED = _impl.VALUE, _impl.BUCKET, _impl.COUNT, _impl.SUM, _impl.CREATED
render_family = _impl.render_family
render_protobuf = _impl.render_protobuf
render_metric = _impl.render_metric
scan = _impl.scan

__all__ = [
    "BUCKET",
    "COUNT",
    "COUNTER",
    "CREATED",
    "GAUGE",
    "HISTOGRAM",
    "SUM",
    "USE_EXTENSIONS",
    "VALUE",
    "render_family",
    "render_metric",
    "render_protobuf",
    "scan",
]
