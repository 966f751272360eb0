"""The benchmarks run as the docs say: ``python -m benchmarks --list``, and asv from a fresh clone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout
    )


def _bare_env(**extra: str) -> dict[str, str]:
    """This environment without Django settings: what asv and a shell give the benchmarks."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return {**env, **extra}


def _cases_in_the_bench_modules() -> list[str]:
    # Read from the modules themselves, in their own process (the runner's loader is what is tested).
    script = (
        "import importlib, pkgutil, benchmarks\n"
        "for m in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):\n"
        "    if m.name.startswith('bench_'):\n"
        "        for c in getattr(importlib.import_module('benchmarks.' + m.name), 'CASES', []):\n"
        "            print(c.name)\n"
    )
    return _run(sys.executable, "-c", script, env=_bare_env()).stdout.split()


def test_list_prints_every_case_by_name_and_measures_nothing():
    res = _run(sys.executable, "-m", "benchmarks", "--list", env=_bare_env())
    assert res.returncode == 0, res.stderr
    listed = res.stdout.split()
    assert listed == _cases_in_the_bench_modules()
    assert len(listed) == len(set(listed)) > 20
    assert {"cache_get_hit", "http_wsgi", "db_sqlite_execute_reused_cursor"} <= set(listed)
    assert "round" not in res.stderr  # no measuring round ran


def test_list_names_only_the_cases_case_selects():
    res = _run(sys.executable, "-m", "benchmarks", "--list", "--case", "^cache_get_", env=_bare_env())
    assert res.returncode == 0, res.stderr
    names = res.stdout.split()
    assert names and all(n.startswith("cache_get_") for n in names)
    assert set(names) == {n for n in _cases_in_the_bench_modules() if n.startswith("cache_get_")}
    none = _run(sys.executable, "-m", "benchmarks", "--list", "--case", "^no such case$", env=_bare_env())
    assert none.returncode == 2 and "no case matches" in none.stderr


def test_every_benchmark_module_imports_before_any_settings_exist():
    # asv imports every module of benchmarks/ to discover the suite, with no settings configured.
    script = (
        "import importlib, pkgutil, benchmarks\n"
        "for m in pkgutil.walk_packages(benchmarks.__path__, 'benchmarks.'):\n"
        "    importlib.import_module(m.name)\n"
        "    print(m.name)\n"
    )
    res = _run(sys.executable, "-c", script, env=_bare_env())
    assert res.returncode == 0, res.stderr
    assert {"benchmarks._tasks_app", "benchmarks._celery_app", "benchmarks.bench_background"} <= set(
        res.stdout.split()
    )


def test_asv_runs_on_a_machine_it_has_never_described(tmp_path):
    # A fresh machine: no ~/.asv-machine.json. Plain `asv run` stops there; the script describes it.
    home = tmp_path / "home"
    home.mkdir()
    env = _bare_env(HOME=str(home), ASV_PYTHON=sys.executable)
    cmd = ["scripts/bench_asv.sh", "--quick", "--dry-run", "--bench", r"LocMemGet\.time_get_hit"]
    res = _run(*cmd, env=env, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "described this machine" in out
    machines = json.loads((home / ".asv-machine.json").read_text())
    assert len([k for k in machines if k != "version"]) == 1
    assert "bench_cache.LocMemGet.time_get_hit" in out and "ok" in out
    assert "Traceback" not in out and "failed" not in out
