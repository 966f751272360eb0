"""The one rule every ``_core`` dispatcher follows: compiled module or pure-Python twin.

Pure when ``DJANGO_PROMETHEUS_NO_EXTENSIONS`` is set (to anything but "" or
"0"), off CPython, or under type checking; otherwise the compiled ``_<name>_c``,
falling back to the twin ``_<name>_py`` only if the extension is missing from
this build. Every module but ``_cells`` follows the cells' choice, so a compiled
step never drives pure cells. This is the home of the extensions switch
(``django_prometheus.conf`` re-exports it; ``setup.py`` reads the same variable
at build time).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

NO_EXTENSIONS: bool = os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS", "") not in ("", "0")
_COMPILED_ALLOWED = not NO_EXTENSIONS and sys.implementation.name == "cpython"


def pick(name: str, follow: ModuleType | None = None) -> ModuleType:
    """The implementation of core module ``name``: ``"_http"`` picks ``_http_c`` or ``_http_py``.

    ``follow``: a dispatcher whose choice this one must share (pure if it is pure).
    """
    allowed = _COMPILED_ALLOWED if follow is None else follow.USE_EXTENSIONS
    if allowed:
        try:
            return importlib.import_module(f"{__package__}.{name}_c")
        except ImportError:  # pragma: no cover - a build without this extension
            pass
    return importlib.import_module(f"{__package__}.{name}_py")


def compiled_modules() -> dict[str, bool]:
    """Every compiled module of this installation -> whether its dispatcher uses it.

    The wheel check: a binary build must use every extension it ships, not fall
    back to a twin because one failed to import.
    """
    found = {}
    for path in Path(__file__).parent.iterdir():
        stem = path.name.split(".", 1)[0]
        if path.suffix in (".so", ".pyd") and stem.endswith("_c"):
            dispatcher = importlib.import_module(f"{__package__}.{stem[:-2]}")
            found[stem] = bool(dispatcher.USE_EXTENSIONS)
    return found
