"""Pick the compiled HTTP recording step or its pure-Python twin, as ``_cells`` does.

The choice follows the cells': the compiled step increments compiled cells, so
both are compiled or both are pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells

if TYPE_CHECKING or not _cells.USE_EXTENSIONS:
    from . import _http_py as _impl
else:
    try:
        from . import _http_c as _impl  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover - a build without this extension
        from . import _http_py as _impl  # type: ignore[no-redef]

#: True when the compiled recording step is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_http_c")

INVALID_METHOD = _impl.INVALID_METHOD
UNNAMED_VIEW = _impl.UNNAMED_VIEW
VALID_METHODS = _impl.VALID_METHODS
AfterRecorder = _impl.AfterRecorder
BeforeRecorder = _impl.BeforeRecorder
body_length = _impl.body_length
now = _impl.now
sanitize_method = _impl.sanitize_method

__all__ = [
    "INVALID_METHOD",
    "UNNAMED_VIEW",
    "USE_EXTENSIONS",
    "VALID_METHODS",
    "AfterRecorder",
    "BeforeRecorder",
    "body_length",
    "now",
    "sanitize_method",
]
