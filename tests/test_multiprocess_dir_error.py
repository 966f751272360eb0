"""A missing ``PROMETHEUS_MULTIPROC_DIR`` ends in its own message, whichever module is imported first.

A module whose import fails half-way must leave nothing registered: a retry (Django
imports the app again, a cache backend imports its metrics again) would otherwise
end in ``DuplicateTimeseries`` and hide the message that says what to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: multiprocess mode is decided when the metric modules are imported.
SCRIPT = textwrap.dedent("""
    import importlib, json, sys
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_prometheus"],
        CACHES={"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}},
        DATABASES={"default": {"ENGINE": "django_prometheus.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    outcomes = []

    def attempt(what, call):
        try:
            call()
            outcomes.append([what, "ok", ""])
        except BaseException as exc:  # every outcome is the point
            outcomes.append([what, f"{type(exc).__module__}.{type(exc).__name__}", str(exc)])

    for module in sys.argv[1:]:  # imported first (twice), before the app loads
        attempt(module, lambda: importlib.import_module(module))
        attempt(module, lambda: importlib.import_module(module))
    attempt("django.setup()", django.setup)  # (Django refuses a second populate() in one process)

    def cache_get():
        from django.core.cache import cache
        cache.get("k")

    attempt("cache.get()", cache_get)
    attempt("cache.get() again", cache_get)
    for module in ["django_prometheus.models", "django_prometheus.cache.metrics",
                   "django_prometheus.db.metrics", "django_prometheus.migrations"]:
        attempt(module, lambda: importlib.import_module(module))
    print(json.dumps(outcomes))
""")


@pytest.mark.parametrize(
    "first",
    [
        [],
        ["django_prometheus.models"],
        ["django_prometheus.cache.metrics"],
        ["django_prometheus.db.metrics"],
        ["django_prometheus.migrations"],
        ["django_prometheus.middleware"],
    ],
    ids=lambda first: first[0].removeprefix("django_prometheus.") if first else "setup",
)
def test_a_missing_multiprocess_dir_is_named_on_every_attempt_never_a_duplicate_timeseries(tmp_path, first):
    missing = tmp_path / "not-there"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(missing)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *first], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    outcomes = json.loads(out.stdout)
    assert len(outcomes) == 2 * len(first) + 7
    assert not [o for o in outcomes if "DuplicateTimeseries" in o[1] + o[2]], outcomes
    assert dict((what, kind) for what, kind, _ in outcomes)["django.setup()"].endswith("ImproperlyConfigured")
    for what, kind, message in outcomes:
        if kind == "ok":  # a module that registers nothing at import (the middleware's families are lazy)
            assert what == "django_prometheus.middleware", (what, kind)
            continue
        assert kind == "django.core.exceptions.ImproperlyConfigured", (what, kind, message)
        assert "PROMETHEUS_MULTIPROC_DIR" in message and str(missing) in message, (what, message)
        assert f"mkdir -p {missing}" in message, (what, message)
    assert not missing.exists()  # we report it, we do not create it
