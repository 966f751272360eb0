"""The DB cursor twins side by side: the same queries through ``_db_c`` and ``_db_py`` count the same."""

from __future__ import annotations

import importlib
import sqlite3
from typing import Any

import pytest

CORES = {"compiled": ("_db_c", "_cells_c"), "pure": ("_db_py", "_cells_py")}


def _load(impl: str) -> tuple[Any, Any]:
    db, cells = CORES[impl]
    try:
        return (
            importlib.import_module(f"django_prometheus._core.{db}"),
            importlib.import_module(f"django_prometheus._core.{cells}"),
        )
    except ImportError:  # pragma: no cover - a pure build
        pytest.skip(f"{db} is not built here")


def _run(impl: str) -> dict[str, Any]:
    db, cells = _load(impl)
    executes, many, duration = cells.Counter(), cells.Counter(), cells.Histogram((0.1, 1.0))
    errors: list[str] = []
    execute = db.instrument_execute(
        sqlite3.Cursor.execute, executes, duration, lambda e: errors.append(type(e).__name__)
    )
    executemany = db.instrument_executemany(
        sqlite3.Cursor.executemany, executes, many, duration, lambda e: errors.append(type(e).__name__)
    )
    cursor = sqlite3.connect(":memory:").cursor()
    execute(cursor, "CREATE TABLE t (x INTEGER)")
    execute(cursor, "INSERT INTO t VALUES (?)", (1,))
    executemany(cursor, "INSERT INTO t VALUES (?)", [(2,), (3,), (4,)])
    executemany(cursor, "INSERT INTO t VALUES (?)", ((i,) for i in range(5)))  # a generator: fix 6
    for bad in ("SELECT nope FROM t", "NOT SQL"):
        with pytest.raises(sqlite3.OperationalError):
            execute(cursor, bad)
    with pytest.raises(sqlite3.OperationalError):
        executemany(cursor, "INSERT INTO nowhere VALUES (?)", [(1,)])
    rows = execute(cursor, "SELECT count(*) FROM t").fetchone()[0]
    return {
        "rows": rows,
        "executes": executes.get(),
        "many": many.get(),
        "durations": duration.count,
        "errors": errors,
    }


def test_both_db_cores_count_the_same():
    compiled, pure = _run("compiled"), _run("pure")
    assert compiled == pure
    # 1 + 1 + 3 + 5 + 2 failing + 1 failing many + 1 select; executemany counts one per parameter set.
    assert pure == {
        "rows": 9,
        "executes": 14.0,
        "many": 9.0,
        "durations": 8.0,
        "errors": ["OperationalError"] * 3,
    }
