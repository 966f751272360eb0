"""Set-up promises: `make demo` needs only Python and pip, `make test` installs system packages
before the DB drivers, and every module imports before Django settings exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Packages that need a system library or a server, or only serve the tests.
NOT_FOR_THE_DEMO = re.compile(
    r"mysqlclient|psycopg|pylibmc|pymemcache|redis|pytest|gunicorn|uvicorn|httpx|\.\[test\]|services\.sh"
)


def _dry_run(target: str) -> list[str]:
    # A venv that does not exist: make prints every step a fresh machine would run.
    out = subprocess.run(
        ["make", "-n", target, "VENV=/nonexistent/fresh-venv"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def test_make_demo_installs_nothing_but_the_package_and_its_runtime_dependencies():
    steps = _dry_run("demo")
    assert any("manage.py demo" in step for step in steps), steps
    offending = [step for step in steps if NOT_FOR_THE_DEMO.search(step)]
    assert offending == [], f"make demo would need more than Python and pip: {offending}"


def test_make_test_installs_the_debian_packages_before_any_db_driver():
    steps = _dry_run("test")
    install = next(i for i, step in enumerate(steps) if "services.sh install" in step)
    drivers = next(i for i, step in enumerate(steps) if '".[test]"' in step)
    assert install < drivers, steps[: drivers + 1]


def test_the_runtime_dependencies_are_django_and_prometheus_client_only():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"])
    assert names == ["django", "prometheus_client"]


MODULES = [
    "django_prometheus", "django_prometheus.conf", "django_prometheus.utils", "django_prometheus.metrics",
    "django_prometheus.testutils", "django_prometheus.models", "django_prometheus.middleware",
    "django_prometheus.exports", "django_prometheus.text_format", "django_prometheus.migrations",
    "django_prometheus.apps", "django_prometheus.db", "django_prometheus.db.common",
    "django_prometheus.db.metrics", "django_prometheus.cache", "django_prometheus.cache.metrics",
    "django_prometheus.cache.backends.locmem", "django_prometheus.cache.backends.filebased",
    "django_prometheus.cache.backends.redis", "django_prometheus.cache.backends.memcached",
    "django_prometheus.db.backends.sqlite3.base", "django_prometheus.db.backends.postgresql.base",
    "django_prometheus.db.backends.mysql.base",
]  # fmt: skip


def test_every_module_imports_before_settings_are_configured(tmp_path):
    # Tools and test runners import these first; upstream falls back to its defaults then.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = f"""
import importlib, traceback
from django.conf import settings
failed = []
for module in {MODULES!r}:
    try:
        importlib.import_module(module)
    except Exception:
        failed.append(module + ": " + traceback.format_exc(limit=1).strip().splitlines()[-1])
assert not settings.configured
from django_prometheus import conf
assert conf.NAMESPACE == "" and conf.PROMETHEUS_LATENCY_BUCKETS[-1] == float("inf")
print("\\n".join(failed) or "all imported")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "all imported"


def test_the_docs_install_our_distribution_never_upstreams():
    # "django-prometheus" on PyPI is upstream's: every install line names ours, or a path/URL;
    # the one exception is the rollback to upstream 2.5.0, after ours is uninstalled.
    texts = {p.name: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
    installs = [
        (name, line) for name, text in texts.items() for line in re.findall(r"pip install [^`\n]*", text)
    ]
    assert installs
    upstream = [
        (name, line)
        for name, line in installs
        if re.search(r"\bdjango-prometheus(?![-\w])", line)
        and line.strip() != "pip install django-prometheus==2.5.0"
    ]
    assert upstream == [], upstream
    for text in texts.values():
        if "pip install django-prometheus==2.5.0" in text:
            rollback = text.index("pip install django-prometheus==2.5.0")
            assert text.rindex("pip uninstall -y django-prometheus-compiled", 0, rollback) > rollback - 200
    page = texts["install.md"]
    quickstart = page.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    for text in (quickstart, README_QUICKSTART()):
        assert "make dist" in text and "pip install dist/django_prometheus_compiled-" in text
        assert "from django_prometheus.models import ExportModelOperationsMixin" in text
    migration = page.split("\n## Migrating from django-prometheus\n", 1)[1].split("\n## ", 1)[0]
    assert migration.index("pip uninstall -y django-prometheus") < migration.index("pip install")


def README_QUICKSTART() -> str:  # noqa: N802
    return (ROOT / "README.md").read_text().split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
