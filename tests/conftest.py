from __future__ import annotations

import importlib
import socket
import sys
import sysconfig
from types import ModuleType
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django_prometheus._core._dispatch import NO_EXTENSIONS


def pytest_configure(config: pytest.Config) -> None:
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        # Free-threaded CPython frees the service clients' connection pools (redis-py, httpx)
        # from the cycle collector, at any later test, so their sockets' ResourceWarning lands in
        # whichever test runs then; with the GIL, reference counting closes them on the spot.
        config.addinivalue_line(
            "filterwarnings",
            "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning",
        )
        config.addinivalue_line("filterwarnings", "ignore:unclosed <socket.socket:ResourceWarning")


def pytest_report_header(config: pytest.Config) -> list[str]:
    from django_prometheus._core import _cells

    import django_prometheus

    core = "compiled" if _cells.USE_EXTENSIONS else "pure"
    return [
        f"django_prometheus from {django_prometheus.__file__} ({core} core: {_cells._impl.__file__})",
        _gil_state(),
    ]


def _gil_state() -> str:
    enabled = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    return f"GIL enabled: {enabled} (Py_GIL_DISABLED={sysconfig.get_config_var('Py_GIL_DISABLED')})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # At the end too: an extension imported during the run may have re-enabled it.
    terminalreporter.write_line(_gil_state() + " at the end of the run")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


SERVICES = {
    "redis": lambda: urlparse(settings.REDIS_URL).port,
    "memcached": lambda: int(settings.MEMCACHED_LOCATION.rsplit(":", 1)[1]),
    "postgresql": lambda: int(settings.DATABASES["postgresql"]["PORT"]),
    "mysql": lambda: int(settings.DATABASES["mysql"]["PORT"]),
}


@pytest.fixture(scope="session")
def require_service():
    """Fail (never skip) when a real server the test needs is down: `make test` starts them."""

    def require(name: str) -> None:
        port = SERVICES[name]()
        if not _reachable("127.0.0.1", port):
            pytest.fail(f"{name} is not listening on 127.0.0.1:{port}; run `scripts/services.sh start`")

    return require


# --- The twins: every test of a core module runs on the compiled module and on its pure twin ---

#: A compiled build: its compiled modules must import (a missing one fails the test that asks
#: for it). On a pure build (``DJANGO_PROMETHEUS_NO_EXTENSIONS`` set, or not CPython) the
#: compiled case skips: the pure run of the same suite is the one that tests pure behaviour.
COMPILED_BUILD = not NO_EXTENSIONS and sys.implementation.name == "cpython"
TWINS = ("compiled", "pure")


class Twin:
    """One core, compiled or pure: ``twin.cells`` is ``_core._cells_c`` or ``_core._cells_py``.

    Every core module by its short name (``cells``, ``http``, ``features``, ``db``,
    ``cache``, ``expo``, ``native``), imported on first use; ``module_name("cells")`` names it
    for a subprocess.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.compiled = kind == "compiled"

    def module_name(self, name: str) -> str:
        return f"django_prometheus._core._{name}{'_c' if self.compiled else '_py'}"

    def __getattr__(self, name: str) -> ModuleType:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            module = importlib.import_module(self.module_name(name))
        except ImportError as exc:
            pytest.fail(f"{self.module_name(name)} does not import in this {self.kind} build: {exc}")
        setattr(self, name, module)
        return module

    def __repr__(self) -> str:
        return f"Twin({self.kind!r})"


def _twin(kind: str) -> Twin:
    if kind == "compiled" and not COMPILED_BUILD:
        pytest.skip("a pure build (DJANGO_PROMETHEUS_NO_EXTENSIONS set): no compiled core to test")
    return Twin(kind)


@pytest.fixture(params=TWINS)
def twin(request: pytest.FixtureRequest) -> Twin:
    """The test once per core: ``[compiled]`` and ``[pure]``."""
    return _twin(request.param)


@pytest.fixture
def compiled_twin() -> Twin:
    """The compiled core, for a test that sets it beside the pure one (skips on a pure build)."""
    return _twin("compiled")


@pytest.fixture
def pure_twin() -> Twin:
    """The pure core: the reference a side-by-side test holds the compiled one to."""
    return _twin("pure")


@pytest.fixture
def mp_server_project(tmp_path, require_service):
    """``(env, mp_dir)``: tests/mp_project in multiprocess mode, ready for a server (tests/mp_servers.py)."""
    from tests.mp_servers import project_env

    require_service("redis")
    return project_env(tmp_path)
