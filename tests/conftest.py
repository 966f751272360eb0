from __future__ import annotations

import socket
import sys
import sysconfig
from urllib.parse import urlparse

import pytest
from django.conf import settings


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
