"""The DB cursor twins side by side: the same queries through ``_db_c`` and ``_db_py`` count the same."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest


def _run(twin: Any) -> dict[str, Any]:
    db, cells = twin.db, twin.cells
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
    # A generator: docs/install.md, What differs, 6.
    executemany(cursor, "INSERT INTO t VALUES (?)", ((i,) for i in range(5)))
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


def test_each_db_core_counts_every_statement_and_parameter_set(twin: Any) -> None:
    # 1 + 1 + 3 + 5 + 2 failing + 1 failing many + 1 select; executemany counts one per parameter set.
    assert _run(twin) == {
        "rows": 9,
        "executes": 14.0,
        "many": 9.0,
        "durations": 8.0,
        "errors": ["OperationalError"] * 3,
    }


def test_the_execute_wrapper_calls_through_and_counts(twin: Any) -> None:
    db, cells = twin.db, twin.cells
    executes, many, duration = cells.Counter(), cells.Counter(), cells.Histogram([0.1, 1.0])
    errors: list[BaseException] = []
    wrapper = db.instrument_wrapper(executes, many, duration, errors.append)
    calls: list[tuple[Any, ...]] = []

    def execute(sql: str, params: Any, is_many: bool, context: Any) -> Any:
        calls.append((sql, list(params) if is_many else params, is_many, context))
        if sql == "boom":
            raise ValueError(sql)
        return "result"

    context = {"connection": None}
    assert wrapper(execute, "q", None, False, context) == "result"
    assert wrapper(execute, "m", [(1,), (2,)], True, context) == "result"
    assert wrapper(execute, "g", ((i,) for i in range(3)), True, context) == "result"
    with pytest.raises(ValueError) as raised:
        wrapper(execute, "boom", [1], False, context)
    assert errors == [raised.value]
    assert calls == [
        ("q", None, False, context),
        ("m", [(1,), (2,)], True, context),
        ("g", [(0,), (1,), (2,)], True, context),
        ("boom", [1], False, context),
    ]
    assert (executes.get(), many.get(), duration.count) == (7, 5, 4)


# Per-request accounting (django_prometheus.db.per_request), both twins side by side.


@pytest.fixture
def core(twin: Any) -> Any:
    """One twin's (execute, executemany, wrapper, module), on a fresh in-memory SQLite cursor."""
    db, cells = twin.db, twin.cells
    executes, many, duration = cells.Counter(), cells.Counter(), cells.Histogram((0.1, 1.0))
    errors: list[str] = []
    on_error = lambda e: errors.append(type(e).__name__)  # noqa: E731
    cursor = sqlite3.connect(":memory:").cursor()
    execute = db.instrument_execute(sqlite3.Cursor.execute, executes, duration, on_error)
    executemany = db.instrument_executemany(sqlite3.Cursor.executemany, executes, many, duration, on_error)
    wrapper = db.instrument_wrapper(executes, many, duration, on_error)

    class Core:
        module = db

        def q(self, sql: str, *params: Any) -> Any:
            return execute(cursor, sql, params)

        def many(self, sql: str, rows: Any) -> Any:
            return executemany(cursor, sql, rows)

        def wrapped(self, sql: Any, params: Any = None, is_many: bool = False) -> Any:
            # Django's side of the execute-wrapper protocol: the next executor.
            return wrapper(lambda s, p, m, c: (s, p, m), sql, params, is_many, {})

    execute(cursor, "CREATE TABLE t (x INTEGER)")
    return Core()


def test_a_request_counts_each_query_once_and_executemany_as_one(core: Any) -> None:
    core.q("SELECT 1")  # before any request: not accounted
    started = time.perf_counter()  # the clock both cores time queries with
    state = core.module.begin_request()
    for i in range(5):
        core.q("INSERT INTO t VALUES (?)", i)
    core.many("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    core.many("INSERT INTO t VALUES (?)", ((i,) for i in range(4)))
    with pytest.raises(sqlite3.OperationalError):
        core.q("SELECT nope FROM t")
    core.wrapped("SELECT 2")
    core.wrapped("INSERT", [(1,), (2,)], True)
    core.module.end_request(state)
    core.q("SELECT 3")  # after the end: not accounted
    # 5 inserts + 2 executemany + the failing one + 2 through the wrapper.
    assert (state.queries, state.repeated) == (10, True)
    assert 0.0 < state.seconds <= time.perf_counter() - started + 1e-9


def test_a_statement_the_cursors_do_not_see_is_accounted_with_its_time(core: Any) -> None:
    core.module.account_statement("COMMIT", 1.0)  # no request: nothing, no error
    state = core.module.begin_request()
    core.module.account_statement("BEGIN", 0.25)
    core.q("SELECT 1")
    core.module.account_statement("COMMIT", 0.5)
    core.module.end_request(state)
    core.module.account_statement("COMMIT", 1.0)  # after the end: not accounted
    assert (state.queries, state.repeated) == (3, False)
    assert 0.75 <= state.seconds < 10.0


@pytest.mark.parametrize(("times", "repeated"), [(4, False), (5, True)])
def test_a_statement_run_five_times_whatever_its_parameters_is_repeated(
    core: Any, times: int, repeated: bool
) -> None:
    state = core.module.begin_request()
    for i in range(times):
        core.q("SELECT x FROM t WHERE x = ?", i)
    for _ in range(4):  # others, 4 times each, never add up to a repeat
        core.q("SELECT 1")
        core.wrapped("SELECT 2")
        core.many("INSERT INTO t VALUES (?)", [(1,)])
    core.module.end_request(state)
    assert (state.queries, state.repeated) == (times + 12, repeated)
    assert core.module.REPEAT_THRESHOLD == 5


def test_distinct_statements_tracked_are_capped(core: Any) -> None:
    cap = core.module.MAX_STATEMENTS
    assert cap == 1000
    state = core.module.begin_request()
    for i in range(cap):
        core.wrapped(f"SELECT {i}")
    for _ in range(5):  # beyond the cap: counted, never tracked
        core.wrapped("SELECT 'new'")
    assert (state.queries, state.repeated) == (cap + 5, False)
    for _ in range(4):  # tracked before the cap: its fifth run is a repeat
        core.wrapped("SELECT 0")
    core.module.end_request(state)
    assert (state.queries, state.repeated) == (cap + 9, True)


def test_an_unhashable_statement_is_counted_and_the_query_still_runs(core: Any) -> None:
    sql = ["not", "hashable"]
    state = core.module.begin_request()
    for _ in range(5):
        assert core.wrapped(sql, (1,)) == (sql, (1,), False)
    core.module.end_request(state)
    assert (state.queries, state.repeated) == (5, False)


def test_accounting_follows_the_context_not_the_thread(core: Any) -> None:
    import asyncio
    import contextvars
    import threading

    state = core.module.begin_request()
    plain = threading.Thread(target=core.wrapped, args=("SELECT 1",))  # a new thread: a new context
    plain.start()
    plain.join()
    copied = contextvars.copy_context()  # what sync_to_async does
    worker = threading.Thread(target=copied.run, args=(core.wrapped, "SELECT 2"))
    worker.start()
    worker.join()
    core.module.end_request(state)
    assert state.queries == 1

    async def request(n: int) -> Any:
        mine = core.module.begin_request()
        for _ in range(n):
            core.wrapped("SELECT 3")
            await asyncio.sleep(0)  # interleave with the other requests
        await asyncio.to_thread(core.wrapped, "SELECT 4")
        core.module.end_request(mine)
        return mine.queries, mine.repeated

    async def concurrently() -> list[Any]:
        return await asyncio.gather(*(request(n) for n in (1, 3, 4, 7)))

    assert asyncio.run(concurrently()) == [(2, False), (4, False), (5, False), (8, True)]


def test_an_ended_request_is_closed_and_the_context_restored(core: Any) -> None:
    import contextvars

    outer = core.module.begin_request()
    inner = core.module.begin_request()
    core.wrapped("SELECT 1")
    core.module.end_request(inner)
    core.wrapped("SELECT 2")  # the outer request again
    leftover = contextvars.copy_context()
    core.module.end_request(outer)
    core.module.end_request(outer)  # twice: a no-op
    leftover.run(core.wrapped, "SELECT 3")  # a context copied before the end: not added any more
    core.wrapped("SELECT 4")
    assert (inner.queries, outer.queries) == (1, 1)
    other = contextvars.Context()
    late = other.run(core.module.begin_request)
    core.module.end_request(late)  # ended in another context than it began in: no error
    other.run(core.wrapped, "SELECT 5")
    assert late.queries == 0
