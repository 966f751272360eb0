"""We ship as ``django-prometheus-compiled``; ``manage.py check`` warns while upstream's is installed too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from django_prometheus import checks

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = 'SECRET_KEY = "x"\nINSTALLED_APPS = ["django_prometheus"]\n'


def test_the_distribution_is_ours_and_the_package_keeps_its_name():
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+)
    assert re.findall(r'^name = "([^"]+)"', pyproject, re.M) == [checks.DISTRIBUTION]
    assert checks.DISTRIBUTION == "django-prometheus-compiled"
    assert re.findall(r'^all = \["([^"\[]+)\[', pyproject, re.M) == [checks.DISTRIBUTION]
    [version] = re.findall(r'^version = "([^"]+)"', pyproject, re.M)
    # the installed package answers to its own name, and is the one importlib.metadata attributes
    assert metadata.version("django-prometheus-compiled") == version
    top_level = metadata.distribution("django-prometheus-compiled").read_text("top_level.txt") or ""
    assert top_level.split() == ["django_prometheus"]


def _check(tmp_path: Path, *site: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "dist_settings.py").write_text(SETTINGS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dist_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *map(str, site)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _upstream_metadata(site: Path) -> None:
    # What pip leaves in site-packages for upstream's wheel (its package files aside):
    # importlib.metadata finds a distribution by its dist-info directory.
    info = site / "django_prometheus-2.5.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: django-prometheus\nVersion: 2.5.0\n")
    (info / "top_level.txt").write_text("django_prometheus\n")


def test_check_warns_while_upstreams_distribution_is_installed_too(tmp_path):
    clean = _check(tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert "W001" not in clean.stdout + clean.stderr
    site = tmp_path / "site"
    _upstream_metadata(site)
    both = _check(tmp_path, site)
    assert both.returncode == 0, both.stderr  # a warning: check passes, and says so
    output = both.stdout + both.stderr
    assert "django_prometheus.W001" in output, output
    assert "django-prometheus 2.5.0 and django-prometheus-compiled 3.0.0a1 are installed" in output
    assert "pip uninstall -y django-prometheus" in output


# django-prometheus 2.5.0's package files (its git tree at v2.5.0, tests and README aside).
UPSTREAM_MODULES = """
__init__.py apps.py cache/__init__.py cache/backends/__init__.py cache/backends/django_memcached_consul.py
cache/backends/filebased.py cache/backends/locmem.py cache/backends/memcached.py cache/backends/redis.py
cache/metrics.py conf/__init__.py db/__init__.py db/backends/__init__.py db/backends/mysql/__init__.py
db/backends/mysql/base.py db/backends/postgis/__init__.py db/backends/postgis/base.py
db/backends/postgresql/__init__.py db/backends/postgresql/base.py db/backends/spatialite/__init__.py
db/backends/spatialite/base.py db/backends/sqlite3/__init__.py db/backends/sqlite3/base.py db/common.py
db/metrics.py exports.py middleware.py migrations.py models.py testutils.py urls.py utils.py
""".split()


def test_every_module_of_upstream_is_a_file_of_ours_at_the_same_path():
    # Installed over upstream's (the order a requirements file may produce), each of its files is
    # overwritten by ours; a path of upstream's that ours lacks would stay behind. Upstream's conf is
    # a package: a stale conf/__init__.py next to a conf.py of ours shadowed it (ImportError at start-up).
    import django_prometheus

    package = Path(django_prometheus.__file__).parent
    assert [path for path in UPSTREAM_MODULES if not (package / path).is_file()] == []
    from django_prometheus import conf

    assert hasattr(conf, "__path__") and Path(conf.__file__) == package / "conf" / "__init__.py"
