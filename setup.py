"""Build the compiled core, unless a pure build is asked for.

``DJANGO_PROMETHEUS_NO_EXTENSIONS=1`` (or a non-CPython interpreter) builds the
pure-Python package; otherwise Cython and a C compiler are required, and a
failure to compile is an error, never a silent fallback.
"""

import os
import platform
import sys

from setuptools import find_packages, setup

NO_EXTENSIONS = os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS", "") not in ("", "0")
if platform.python_implementation() != "CPython":
    NO_EXTENSIONS = True

if NO_EXTENSIONS:
    print("*" * 60 + "\n django-prometheus-compiled: building the PURE-PYTHON core\n" + "*" * 60)
    ext_modules = []
else:
    print("*" * 60 + "\n django-prometheus-compiled: building the COMPILED (Cython) core\n" + "*" * 60)
    from Cython.Build import cythonize
    from setuptools import Extension

    ext_modules = cythonize(
        [
            Extension("django_prometheus._core._cells_c", ["_core/_cells_c.pyx"]),
            Extension("django_prometheus._core._db_c", ["_core/_db_c.pyx"]),
            Extension("django_prometheus._core._expo_c", ["_core/_expo_c.pyx"]),
            Extension("django_prometheus._core._http_c", ["_core/_http_c.pyx"]),
            Extension("django_prometheus._core._cache_c", ["_core/_cache_c.pyx"]),
            Extension("django_prometheus._core._features_c", ["_core/_features_c.pyx"]),
            Extension("django_prometheus._core._native_c", ["_core/_native_c.pyx"]),
        ],
        compiler_directives={"language_level": "3"},
    )
    # Strip symbols and debug info at link time (Python's CFLAGS carry -g): unstripped, the
    # modules weigh megabytes. Here rather than in a wheel step, so every build path agrees.
    # DJANGO_PROMETHEUS_KEEP_SYMBOLS=1 keeps them, for profiles (callgrind, perf) that name functions.
    strip_args = {"darwin": ["-Wl,-x"], "win32": []}.get(sys.platform, ["-s"])
    if os.environ.get("DJANGO_PROMETHEUS_KEEP_SYMBOLS", "") not in ("", "0"):
        strip_args = []
    for ext in ext_modules:
        ext.extra_link_args = [*ext.extra_link_args, *strip_args]

# The core lives in the top-level _core/ folder and installs as django_prometheus._core.
setup(packages=[*find_packages("src"), "django_prometheus._core"], ext_modules=ext_modules)
