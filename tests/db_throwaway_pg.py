"""A PostgreSQL server of a test's own (initdb in a temporary directory, a free port), to stop at will.

For tests that need an outage: the shared service of scripts/services.sh is
never stopped. Runs as the ``postgres`` user when the tests run as root
(PostgreSQL refuses root), as the current user otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import free_port

PGBIN = Path(os.environ.get("DP_PGBIN", "/usr/lib/postgresql/15/bin"))


class ThrowawayPostgres:
    """``start()``/``stop()`` a server with trust auth; ``settings``: HOST, PORT, USER... for DATABASES."""

    def __init__(self) -> None:
        if not (PGBIN / "initdb").exists():
            pytest.fail(f"no PostgreSQL binaries in {PGBIN}; run `scripts/services.sh install`")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dp-throwaway-pg-"))
        self.data = self.dir / "data"
        self._as = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                  "--auth=trust", "-N")  # fmt: skip
        self.settings = {"HOST": "127.0.0.1", "PORT": str(self.port), "USER": "postgres", "PASSWORD": "",
                         "NAME": "postgres"}  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run(
            [*self._as, str(PGBIN / tool), *args], capture_output=True, text=True, timeout=120
        )
        if proc.returncode:
            pytest.fail(f"{tool} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.dir}' "
                   "-c fsync=off -c synchronous_commit=off")  # fmt: skip
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w", "-s", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-s", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
