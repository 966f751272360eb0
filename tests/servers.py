"""Real servers for the tests: a free loopback port, and a server subprocess run until the block ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60

#: A scrape's samples: ``(name, frozenset(labels.items()))`` -> value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a scrape (Prometheus text format), keyed by name and exact label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample_value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels``; 0.0 when the scrape has none."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    args: list[str], port: int, log: Path, settings: str, drop: tuple[str, ...] = (), **env: str
) -> Iterator[str]:
    """``python -m <args>`` with ``settings``, until it listens on ``port``; its base URL, then stopped.

    ``drop`` names variables of this environment the server must not inherit.
    """
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    environ.update(DJANGO_SETTINGS_MODULE=settings, PYTHONPATH=str(ROOT), **env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"server did not listen within {STARTUP_SECONDS}s:\n{log.read_text()}")
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
