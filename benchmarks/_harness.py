"""Shared benchmark harness: cases, implementations, in-process set-up.

Implementations (``IMPLS``), measured side by side:

- ``bare``: Django's own backend, no instrumentation (the floor);
- ``compiled``: our backend strings with the compiled core;
- ``pure``: our backend strings with the pure-Python twin
  (``DJANGO_PROMETHEUS_NO_EXTENSIONS=1``);
- ``upstream``: the same backend strings served by django-prometheus 2.5.0,
  which the runner installs in ``.venv-upstream``.

Adding a case
-------------
An area module ``benchmarks/bench_<area>.py`` declares ``CASES``, a list of
:class:`Case`, and asv classes that call :func:`prepare`::

    def _settings(impl: str) -> dict[str, Any]:
        # Django settings for this impl; passed to settings.configure().
        return {"CACHES": {"default": {"BACKEND": BACKENDS[impl]}}}

    def _build_get_hit(impl: str) -> Op:
        # Runs after django.setup(); import Django here, never at the top.
        from django.core.cache import caches

        cache = caches["default"]
        cache.set("k", b"v", None)
        return functools.partial(cache.get, "k")

    CACHE_GET_HIT = Case("cache_get_hit", _settings, _build_get_hit)
    CASES = [CACHE_GET_HIT]

    class CacheGet:  # asv
        params = IMPLS
        param_names = ["impl"]

        def setup(self, impl: str) -> None:
            self.get_hit = prepare(CACHE_GET_HIT, impl)

        def time_get_hit(self, impl: str) -> None:
            self.get_hit()

``python -m benchmarks`` finds every ``bench_*.py`` module's ``CASES``, runs
each case in fresh ``benchmarks._probe`` subprocesses per implementation and
prints the table. ``op`` should do one unit of the work users pay for, with
no set-up inside it: its cost is what is compared. Area modules must not
import Django or django_prometheus at module level, because asv and the
runner import them before settings exist (and upstream's package reads
settings on import).

Nothing in the ``_*.py`` helpers may be named ``time_*``, ``mem_*``,
``peakmem_*``, ``track_*`` or ``timeraw_*``: asv imports every module here
and would take such names for benchmarks.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

IMPLS = ("bare", "compiled", "pure", "upstream")
NO_EXTENSIONS = "DJANGO_PROMETHEUS_NO_EXTENSIONS"
CELLS = "django_prometheus._core._cells"

Op = Callable[[], object]  # for an async case, a coroutine function (``Case.is_async``)


@dataclass(frozen=True)
class Case:
    """One benchmark: ``settings(impl)`` for Django, then ``build(impl)`` returns ``op``."""

    name: str
    settings: Callable[[str], dict[str, Any]]
    build: Callable[[str], Op]
    warmup: int = 2_000  # calls before measuring (a scrape of 10,000 children needs a handful)
    #: Loop counts for the instruction count (a slope over several); () sizes them from the timing.
    counts: tuple[int, ...] = ()
    #: ``build`` returns a coroutine function: the probe awaits it K times in one coroutine, on
    #: one event loop run per timed or counted loop, so no per-call loop turn is measured.
    is_async: bool = False


def load_cases(pattern: str | None = None) -> list[Case]:
    """Every ``CASES`` entry of the ``bench_*`` modules whose name matches ``pattern`` (regex)."""
    package = importlib.import_module(__package__ or "benchmarks")
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            cases.extend(getattr(module, "CASES", []))
    return [c for c in cases if pattern is None or re.search(pattern, c.name)]


def find_case(name: str) -> Case:
    for case in load_cases():
        if case.name == name:
            return case
    raise LookupError(f"no benchmark case named {name!r}")


def prepare(case: Case, impl: str) -> Op:
    """Configure Django for ``case`` under ``impl`` in this process and return its ``op``.

    Raises NotImplementedError (asv's "skip") when ``impl`` cannot run in this
    process: the package is absent or is the other flavour, or the other core
    is already imported.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")
    if impl in ("compiled", "pure") and CELLS not in sys.modules:
        # The dispatcher reads the variable once, at import: set it before anything imports it.
        if impl == "pure":
            os.environ[NO_EXTENSIONS] = "1"
        else:
            os.environ.pop(NO_EXTENSIONS, None)
    _configure(case.settings(impl))
    _check_impl(impl)
    return case.build(impl)


def core_in_use() -> str:
    """Which instrumentation this process really runs: bare, upstream, compiled or pure."""
    if "django_prometheus" not in sys.modules:
        return "bare"
    if not _has_core():
        return "upstream"
    return "compiled" if importlib.import_module(CELLS).USE_EXTENSIONS else "pure"


def _configure(wanted: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        # asv may run several benchmarks in one process; Django configures once.
        clash = [k for k, v in wanted.items() if getattr(settings, k, None) != v]
        if clash:
            raise NotImplementedError(f"Django already configured with other {', '.join(clash)}")
        return
    settings.configure(**wanted)
    django.setup()


def _has_core() -> bool:
    # Imports django_prometheus itself, so only call this once settings are configured.
    return importlib.util.find_spec("django_prometheus._core") is not None


def _check_impl(impl: str) -> None:
    if impl == "bare":
        return
    if importlib.util.find_spec("django_prometheus") is None:
        raise NotImplementedError("django_prometheus is not installed here")
    try:
        ours = _has_core()
    except Exception as exc:  # reported as the skip reason, so nothing is hidden
        raise NotImplementedError(f"importing django_prometheus failed: {exc!r}") from exc
    if impl == "upstream":
        if ours:
            raise NotImplementedError("this environment has our django_prometheus, not upstream's")
        return
    if not ours:
        raise NotImplementedError("this environment has upstream's django-prometheus")
    live = "compiled" if importlib.import_module(CELLS).USE_EXTENSIONS else "pure"
    if live != impl:
        raise NotImplementedError(f"the {live} core is live in this process")
