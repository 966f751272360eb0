"""The core's per-operation cache recorders, compiled and pure side by side (no Django)."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest


class Core:
    def __init__(self, twin) -> None:
        self.m = twin.cache
        self.cells = twin.cells

    def counters(self, n: int):
        return [self.cells.Counter() for _ in range(n)]

    def histogram(self):
        return self.cells.Histogram((0.001, 0.01, 1.0))


@pytest.fixture
def core(twin):
    return Core(twin)


def values(cells):
    return [c.get() for c in cells]


class Store:
    INTERRUPTED = object()

    def __init__(self, core):
        self.core = core
        self.data = {"k": 0, "n": None}

    def get(self, key, default=None, version=None):
        if key == "boom":
            raise ConnectionError("down")
        if key == "swallowed":
            return self.INTERRUPTED
        return self.data.get(key, default)


def make_get(core, store, takes_kwargs=False):
    upstream = core.counters(4)
    op = core.counters(3)
    duration = core.histogram()
    get = core.m.instrument_get(store.get, *upstream, Store.INTERRUPTED, *op, duration, takes_kwargs)
    return get, upstream, op, duration


def test_get_counts_upstream_and_operation_results_once(core):
    store = Store(core)
    get, upstream, op, duration = make_get(core, store)
    marker = object()
    assert get("k") == 0  # a stored falsy value is a hit
    assert get("n", "d") is None  # a stored None too
    assert get("absent", marker) is marker
    assert get("swallowed", "d") == "d"
    with pytest.raises(ConnectionError):
        get("boom")
    assert values(upstream) == [5, 2, 1, 2]  # gets, hits, misses, fails
    assert values(op) == [2, 1, 2]  # hit, miss, error
    assert duration.count == 5


def test_get_without_kwargs_refuses_them_and_with_kwargs_passes_them(core):
    store = Store(core)
    get, *_ = make_get(core, store)
    with pytest.raises(TypeError):
        get("k", client=1)
    seen = {}

    def real(key, default, version, **kwargs):
        seen.update(kwargs)
        return default

    get_kw = core.m.instrument_get(real, *core.counters(4), None, *core.counters(3), core.histogram(), True)
    assert get_kw("k", "d", client=7) == "d"
    assert seen == {"client": 7}


def test_get_refuses_cells_of_another_kind(core):
    with pytest.raises(TypeError):
        core.m.instrument_get(len, *core.counters(4), None, *core.counters(3), core.counters(1)[0])
    with pytest.raises(TypeError):
        core.m.instrument_op(len, object(), core.counters(1)[0], core.histogram())


def test_nested_operations_record_only_the_outermost(core):
    store = Store(core)
    get, upstream, get_op, _ = make_get(core, store)
    ok, error = core.counters(2)
    hit, miss, herror = core.counters(3)

    def real_has_key(self, key):
        return get(key, store) is not store  # BaseCache.has_key: through get

    has_key = core.m.instrument_has_key(real_has_key, hit, miss, herror, core.histogram())

    def real_incr(self, key):
        if not has_key(self, key):
            raise ValueError(key)
        return 1

    incr = core.m.instrument_op(real_incr, ok, error, core.histogram())
    assert incr(None, "k") == 1
    with pytest.raises(ValueError):
        incr(None, "absent")
    assert has_key(None, "k") is True
    assert values([ok, error]) == [1, 1]
    assert values([hit, miss, herror]) == [1, 0, 0]
    assert values(get_op) == [0, 0, 0]  # every get ran inside another operation
    assert values(upstream) == [3, 2, 1, 0]  # upstream's families count them all


def test_a_swallowed_failure_inside_an_operation_is_its_error(core):
    store = Store(core)
    get, upstream, _, _ = make_get(core, store)
    ok, error = core.counters(2)

    def real(self):
        get("swallowed")  # a nested get hears an interruption
        return None

    op = core.m.instrument_op(real, ok, error, core.histogram())
    op(None)
    assert values([ok, error]) == [0, 1]

    def noting(self):
        core.m.note_failure()  # what a backend's own error handler does
        return {}

    op2 = core.m.instrument_op(noting, ok, error, core.histogram())
    op2(None)
    assert values([ok, error]) == [0, 2]
    core.m.note_failure()  # outside any operation: nothing to tell, no error
    assert upstream[3].get() == 1


def test_get_many_counts_each_distinct_key_and_reads_a_generator_once(core):
    hit, miss, error = core.counters(3)
    seen = []

    def real(self, keys, version=None):
        seen.append(keys)
        return {k: 1 for k in keys if k.startswith("h")}

    get_many = core.m.instrument_get_many(real, hit, miss, error, core.histogram())
    assert get_many(None, (k for k in ["h1", "h2", "m", "h1"])) == {"h1": 1, "h2": 1}
    assert seen == [["h1", "h2", "m", "h1"]]
    assert values([hit, miss, error]) == [2, 1, 0]

    def failing(self, keys):
        raise OSError("down")

    with pytest.raises(OSError):
        core.m.instrument_get_many(failing, hit, miss, error, core.histogram())(None, ["a", "b", "a"])
    assert error.get() == 2


def test_the_marker_follows_contexts_not_threads(core):
    ok, error = core.counters(2)
    inner_ok, inner_error = core.counters(2)
    inner = core.m.instrument_op(lambda self: None, inner_ok, inner_error, core.histogram())

    def real(self):
        # As sync_to_async does: run in another thread, in a copy of this context.
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(inner, None))
        t.start()
        t.join()
        # A thread with a fresh context is another caller: it records its own.
        t = threading.Thread(target=inner, args=(None,))
        t.start()
        t.join()

    core.m.instrument_op(real, ok, error, core.histogram())(None)
    assert values([ok, inner_ok]) == [1, 1]
    assert core.m.CURRENT.get(None) is None


def test_concurrent_tasks_do_not_hide_each_others_calls(core):
    ok, error = core.counters(2)
    op = core.m.instrument_op(lambda self: None, ok, error, core.histogram())

    async def task():
        for _ in range(100):
            op(None)
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(task() for _ in range(10)))

    asyncio.run(main())
    assert ok.get() == 1000


def test_durations_are_observed_per_outermost_call(core):
    ok, error = core.counters(2)
    duration = core.histogram()
    op = core.m.instrument_op(lambda self: None, ok, error, duration)
    started = core.m.clock()
    for _ in range(3):
        op(None)
    elapsed = core.m.clock() - started
    assert duration.count == 3
    assert 0 <= duration.sum <= elapsed + 1e-9  # within the calls, however slow the machine
    assert core.m.clock() > 0


# --- upstream's four families alone (count_get, count_get_many) ---------------------------------


class FakeStore:
    """A dict-backed stand-in for a backend's real get(key, default, version)."""

    def __init__(self):
        self.data = {}
        self.calls = []

    def get(self, key, default=None, version=None, **kwargs):
        self.calls.append((key, version, kwargs))
        if key == "boom":
            raise ConnectionError("down")
        return self.data.get((key, version), default)


@pytest.fixture
def wrapped(core):
    store = FakeStore()
    cells = core.counters(4)
    get = core.m.count_get(store.get, *cells, interrupted="INTERRUPTED")
    return store, get, cells


@pytest.mark.parametrize("stored", [0, "", [], False, None, b"x", {"a": 1}])
def test_counted_get_returns_stored_falsy_values_and_counts_hits(wrapped, stored):
    store, get, (gets, hits, misses, fails) = wrapped
    store.data[("k", None)] = stored
    assert get("k", "default") == stored
    assert get("k", default="default") is stored
    assert (gets.get(), hits.get(), misses.get(), fails.get()) == (2, 2, 0, 0)


def test_counted_get_miss_returns_callers_default(wrapped):
    store, get, (gets, hits, misses, fails) = wrapped
    sentinel = object()
    assert get("absent") is None
    assert get("absent", sentinel) is sentinel
    assert (gets.get(), hits.get(), misses.get(), fails.get()) == (2, 0, 2, 0)


def test_counted_get_passes_version_and_extra_kwargs(wrapped):
    store, get, _ = wrapped
    store.data[("k", 2)] = "v2"
    assert get("k", version=2) == "v2"
    assert get("k", None, 2, client="c") == "v2"
    assert store.calls[-1] == ("k", 2, {"client": "c"})


def test_counted_get_reraises_the_same_exception_and_counts_a_failure(wrapped):
    _, get, (gets, hits, misses, fails) = wrapped
    with pytest.raises(ConnectionError, match="down") as info:
        get("boom")
    assert info.value.__traceback__ is not None
    assert (gets.get(), hits.get(), misses.get(), fails.get()) == (1, 0, 0, 1)


def test_counted_get_counts_a_swallowed_failure_and_returns_default(wrapped):
    store, get, (gets, hits, misses, fails) = wrapped
    store.data[("k", None)] = "INTERRUPTED"
    assert get("k", "dflt") == "dflt"
    assert (gets.get(), hits.get(), misses.get(), fails.get()) == (1, 0, 0, 1)


def test_count_get_many_counts_each_distinct_key_once(core):
    gets, hits, misses = core.counters(3)
    core.m.count_get_many(["a", "b", "c", "a"], 2, gets, hits, misses)
    assert (gets.get(), hits.get(), misses.get()) == (3, 2, 1)


def test_counted_get_takes_core_counters_only(core):
    # The compiled core counts through the cells' C entry points: anything else is refused up
    # front, by both cores alike, not misread per call.
    with pytest.raises(TypeError, match="Counter"):
        core.m.count_get(len, *core.counters(3), core.histogram())
    with pytest.raises(TypeError, match="Counter"):
        core.m.count_get_many(["a"], 1, *core.counters(2), object())
