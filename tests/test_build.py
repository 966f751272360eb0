"""The installed package is the built one, and by default it runs the compiled core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import django_prometheus

REPO = Path(__file__).resolve().parent.parent


def test_package_is_imported_from_the_installation_not_the_source_tree():
    installed = Path(django_prometheus.__file__).resolve()
    assert REPO / "src" not in installed.parents
    assert Path(sysconfig.get_paths()["purelib"]).resolve() in installed.parents


def test_installed_build_imports_the_compiled_core_by_default():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_PROMETHEUS_NO_EXTENSIONS"}
    code = "from django_prometheus._core import _cells\nprint(_cells.USE_EXTENSIONS, _cells._impl.__file__)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "True", out
    assert out[1].endswith(sysconfig.get_config_var("EXT_SUFFIX")), out


def test_pure_twin_is_used_when_asked_for():
    env = {**os.environ, "DJANGO_PROMETHEUS_NO_EXTENSIONS": "1"}
    code = "from django_prometheus._core import _cells; print(_cells.USE_EXTENSIONS, _cells._impl.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "django_prometheus._core._cells_py"]


def test_every_compiled_module_is_the_one_in_use():
    # A binary build must not fall back to a twin because one extension failed to import.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_PROMETHEUS_NO_EXTENSIONS"}
    code = "import json; from django_prometheus._core import _dispatch as d; "
    code += "print(json.dumps(d.compiled_modules()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True
    ).stdout.strip()
    found = json.loads(out)
    assert {"_cells_c", "_db_c", "_http_c"} <= set(found), found
    assert all(found.values()), found


def test_the_http_core_is_a_leaf():
    # _core imports nothing from Django or from django_prometheus' own modules (grep-able, as promised).
    for path in (REPO / "_core").glob("_http*"):
        text = path.read_text()
        assert "import django" not in text and "from django" not in text, path


def test_the_wheel_check_runs_every_twin_file():
    # The twin files (tests/test_core_*.py: one core module, compiled and pure side by side) are
    # what proves a wheel's compiled core; cibuildwheel and scripts/dist_check.sh run them all.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    twins = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests").glob("test_core_*.py"))
    commands = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["cibuildwheel"]["test-command"]
    (run,) = [c for c in commands if "pytest" in c]
    assert sorted(arg for arg in run.split() if arg.startswith("tests/")) == twins
    assert "-m pytest -q tests/test_core_*.py" in (REPO / "scripts" / "dist_check.sh").read_text()


def test_the_power_of_ten_table_is_what_its_script_writes():
    # _core/dp_pow10.h (the compiled writer's float formatting) is generated: scripts/gen_pow10.py
    # proves its formulas and ranges with exact integers, then compares what it would write.
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_pow10.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
