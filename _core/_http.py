"""The compiled HTTP recording or its pure-Python twin, as the cells were picked (``_dispatch``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells
from ._dispatch import pick

if TYPE_CHECKING:
    from . import _http_py as _impl
else:
    _impl = pick("_http", follow=_cells)

#: True when the compiled recording is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_http_c")

NO_CELL = _impl.NO_CELL
SKIP = _impl.SKIP
AfterRecorder = _impl.AfterRecorder
BeforeRecorder = _impl.BeforeRecorder
Middleware = _impl.Middleware
ServerTiming = _impl.ServerTiming
Settings = _impl.Settings
body_length = _impl.body_length
charset = _impl.charset
get_features = _impl.get_features
hook_view_name = _impl.hook_view_name
log_failure = _impl.log_failure
response_body_size = _impl.response_body_size
sanitize_method = _impl.sanitize_method
server_timing_value = _impl.server_timing_value
set_features = _impl.set_features
template_name = _impl.template_name
transport = _impl.transport
view_name = _impl.view_name

__all__ = [
    "NO_CELL",
    "SKIP",
    "USE_EXTENSIONS",
    "AfterRecorder",
    "BeforeRecorder",
    "Middleware",
    "ServerTiming",
    "Settings",
    "body_length",
    "charset",
    "get_features",
    "hook_view_name",
    "log_failure",
    "response_body_size",
    "sanitize_method",
    "server_timing_value",
    "set_features",
    "template_name",
    "transport",
    "view_name",
]
