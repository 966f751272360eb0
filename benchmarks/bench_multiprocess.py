"""Multiprocess mode (PROMETHEUS_MULTIPROC_DIR set): one request, one cache get, one query.

The same operations as ``bench_http.http_wsgi``, ``bench_cache.cache_get_hit`` and
``bench_db.db_sqlite_execute_reused_cursor``,
with the variable set before anything imports prometheus_client, so every
impl runs in its multiprocess mode: prometheus_client's values (a lock,
``os.getpid()`` and an mmap write per increment) for upstream, per-process
files written through raw slot pointers for ours compiled, a struct write into
the mapping for ours pure. Each probe gets a fresh directory, removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from . import bench_cache, bench_db, bench_http
from ._harness import IMPLS, Case, Op, prepare

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _enter_multiprocess_mode() -> None:
    if os.environ.get(ENV):
        return
    if "prometheus_client.values" in sys.modules:
        # The mode is decided when prometheus_client (and our metrics) are imported.
        raise NotImplementedError("prometheus_client was imported before multiprocess mode was set")
    directory = tempfile.mkdtemp(prefix="dp-bench-multiproc-")
    atexit.register(shutil.rmtree, directory, True)
    os.environ[ENV] = directory


def _check_multiprocess(impl: str) -> None:
    if impl == "bare":
        return
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError("prometheus_client is not in multiprocess mode")
    if impl in ("compiled", "pure"):
        from django_prometheus import metrics

        if metrics.MULTIPROCESS_DIR != os.environ[ENV]:
            raise RuntimeError("django_prometheus is not in multiprocess mode")


def _http_settings(impl: str) -> dict[str, Any]:
    _enter_multiprocess_mode()
    return bench_http._settings(impl)


def _cache_settings(impl: str) -> dict[str, Any]:
    _enter_multiprocess_mode()
    return bench_cache._locmem_settings(impl)


def _db_settings(impl: str) -> dict[str, Any]:
    _enter_multiprocess_mode()
    return bench_db._settings_for("sqlite")(impl)


def _build_http(impl: str) -> Op:
    op = bench_http._build_wsgi(impl)
    _check_multiprocess(impl)
    if impl != "bare" and not any(f.endswith(".db") for f in os.listdir(os.environ[ENV])):
        raise RuntimeError("nothing was written to the multiprocess directory")
    return op


def _build_cache_hit(impl: str) -> Op:
    op = bench_cache._build_get_hit(impl)
    _check_multiprocess(impl)
    return op


def _build_db_reused(impl: str) -> Op:
    op = bench_db._build_reused(impl)
    _check_multiprocess(impl)
    return op


# The same warm-up and loop counts as http_wsgi, so the two rows compare request for request.
MP_HTTP_WSGI = Case(
    "mp_http_wsgi",
    _http_settings,
    _build_http,
    warmup=bench_http.HTTP_WSGI.warmup,
    counts=bench_http.WSGI_COUNTS,
)
MP_CACHE_GET_HIT = Case("mp_cache_get_hit", _cache_settings, _build_cache_hit)
MP_DB_SQLITE_REUSED = Case("mp_db_sqlite_execute_reused_cursor", _db_settings, _build_db_reused)
CASES = [MP_HTTP_WSGI, MP_CACHE_GET_HIT, MP_DB_SQLITE_REUSED]


class MultiprocessRequest:
    """One WSGI request in multiprocess mode, per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.request = prepare(MP_HTTP_WSGI, impl)

    def time_request(self, impl: str) -> None:
        self.request()


class MultiprocessCacheGet:
    """``LocMemCache.get()`` (a hit) in multiprocess mode, per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.get_hit = prepare(MP_CACHE_GET_HIT, impl)

    def time_get_hit(self, impl: str) -> None:
        self.get_hit()


class MultiprocessSQLiteExecute:
    """``cursor.execute("SELECT 1")`` on in-memory SQLite in multiprocess mode, per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.reused = prepare(MP_DB_SQLITE_REUSED, impl)

    def time_execute_reused_cursor(self, impl: str) -> None:
        self.reused()
