"""The compiled native histograms or their pure-Python twin, picked once at import (rule: ``_dispatch``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _cells
from ._dispatch import pick

if TYPE_CHECKING:
    from . import _native_py as _impl
else:
    _impl = pick("_native", follow=_cells)

#: True when the compiled module is the one in use.
USE_EXTENSIONS: bool = _impl.__name__.endswith("_native_c")

NativeHistogram = _impl.NativeHistogram
encode_histogram = _impl.encode_histogram
merge_states = _impl.merge_states
pick_schema = _impl.pick_schema

__all__ = [
    "USE_EXTENSIONS",
    "NativeHistogram",
    "encode_histogram",
    "merge_states",
    "pick_schema",
]
