"""The core's cells, against both implementations (compiled and pure) side by side."""

from __future__ import annotations

import math
import sys
import threading

import pytest


@pytest.fixture
def core(twin):
    return twin.cells


def test_counter_counts_and_refuses_negative(core):
    c = core.Counter()
    assert c.get() == 0.0
    c.inc()
    c.inc(2.5)
    assert c.get() == 3.5
    with pytest.raises(ValueError):
        c.inc(-1)
    assert c.get() == 3.5
    assert c._value.get() == 3.5  # prometheus_client child compatibility
    assert c.created > 1_600_000_000


def test_counter_count_exceptions_counts_only_raised(core):
    c = core.Counter()
    with pytest.raises(KeyError), c.count_exceptions(KeyError):
        raise KeyError("x")
    with c.count_exceptions(KeyError):
        pass
    assert c.get() == 1.0


def test_gauge_moves_both_ways(core):
    g = core.Gauge()
    g.inc(5)
    g.dec(2)
    assert g.get() == 3.0
    g.set(-7.5)
    assert g.get() == -7.5
    with g.track_inprogress():
        assert g.get() == -6.5
    assert g.get() == -7.5


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0.0, 0), (1.0, 0), (1.0000001, 1), (2.0, 1), (4.9, 2), (5.0, 2), (5.1, 3), (1e300, 3), (-3.0, 0)],
)
def test_histogram_puts_value_in_first_bucket_whose_bound_is_not_below_it(core, value, bucket):
    h = core.Histogram([1.0, 2.0, 5.0])
    h.observe(value)
    expected = [0.0] * 4
    for i in range(bucket, 4):
        expected[i] = 1.0
    assert h.buckets() == expected
    assert h.bounds == (1.0, 2.0, 5.0, math.inf)
    assert h.sum == value
    assert h.count == 1.0


def test_histogram_matches_prometheus_client_on_many_values(core):
    from prometheus_client import CollectorRegistry
    from prometheus_client import Histogram as PCHistogram

    bounds = [0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0]
    ours = core.Histogram(bounds)
    theirs = PCHistogram("h", "h", buckets=bounds, registry=CollectorRegistry())
    values = [i / 97.0 for i in range(-50, 1500)] + [0.01, 0.025, 2.5, 10.0, math.inf]
    for v in values:
        ours.observe(v)
        theirs.observe(v)
    expected = [s.value for s in theirs.collect()[0].samples if s.name == "h_bucket"]
    assert ours.buckets() == expected
    assert ours.sum == pytest.approx(sum(v for v in values if v != math.inf) + math.inf)


def test_histogram_nan_lands_in_no_bucket_like_prometheus_client(core):
    h = core.Histogram([1.0])
    h.observe(float("nan"))
    assert h.buckets() == [0.0, 0.0]
    assert math.isnan(h.sum)


def test_histogram_rejects_unsorted_bounds_and_appends_inf(core):
    with pytest.raises(ValueError):
        core.Histogram([2.0, 1.0])
    with pytest.raises(ValueError):
        core.Histogram([math.inf])
    assert core.Histogram([1, 2]).bounds == (1.0, 2.0, math.inf)


def test_histogram_made_any_way_keeps_its_own_counts(core):
    # The compiled cell's counts live inside it, sized by its bounds when it is allocated:
    # every way of making one (keyword, a subclass made in Python, threads making cells of
    # different sizes at once) must give each cell its own counts of its own length.
    class Sub(core.Histogram):
        pass

    made = [core.Histogram(bounds=[1.0]), Sub([1.0, 2.0]), Sub(bounds=[5.0])]
    with pytest.raises(TypeError):
        core.Histogram()
    lock = threading.Lock()

    def make(k: int) -> None:
        for i in range(200):
            h = core.Histogram([float(b) for b in range(1, 2 + (k + i) % 20)])
            with lock:
                made.append(h)

    threads = [threading.Thread(target=make, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in made:
        for b in h.bounds:
            h.observe(b)
        n = len(h.bounds)
        assert h.buckets() == [float(i + 1) for i in range(n)]
        assert h.count == n
        h.set_exemplar_capture(lambda: {"trace_id": "t"})
        h.observe(0.5)
        assert h.buckets()[0] == 2.0 and h.exemplars()[0][0] == {"trace_id": "t"}
        assert h.buckets()[-1] == n + 1


def test_family_returns_one_cell_per_label_tuple(core):
    f = core.Family(lambda values: core.Counter())
    a = f.get(("x", "y"))
    assert f.get(("x", "y")) is a
    b = f.get(("x", "z"))
    assert b is not a
    a.inc()
    assert dict(f.children()) == {("x", "y"): a, ("x", "z"): b}
    f.remove(("x", "y"))
    assert len(f) == 1
    f.clear()
    assert f.children() == []


def test_family_snapshot_is_its_children_in_order_with_the_version(core):
    # What a scrape reads: the writer keeps one `_created` text per child in this order, and
    # trusts it while the version is the same.
    f = core.Family(lambda values: core.Counter())
    assert f.snapshot() == (0, [], [])
    cells = [f.get((str(i), "GET")) for i in range(5)]
    f.get(("1", "GET"))  # an existing child: no new version
    version, keys, got = f.snapshot()
    assert (version, keys) == (5, [(str(i), "GET") for i in range(5)])
    assert all(a is b for a, b in zip(got, cells, strict=True))
    f.remove(("2", "GET"))
    version, keys, got = f.snapshot()
    assert version == 6 and list(zip(keys, got, strict=True)) == f.children()


def _runtime(text: str) -> str:
    """``text`` as a new string object (equal, not identical), as request data gives them."""
    return "".join(list(text))


def test_family_finds_children_by_equal_values_across_growths(core):
    # The compiled family's own table grows by doubling and is rebuilt from the stored values:
    # every child stays found by equal (not identical) values, in insertion order.
    f = core.Family(lambda values: core.Counter())
    made = [f.get((f"app.views.view_{i}", "GET")) for i in range(3_000)]
    for i in range(0, 3_000, 7):
        key = (_runtime(f"app.views.view_{i}"), _runtime("GET"))
        assert key[0] is not f"app.views.view_{i}"
        assert f.get(key) is made[i]
    assert len(f) == 3_000
    assert [cell for _, cell in f.children()] == made
    assert [key for key, _ in f.children()][:2] == [("app.views.view_0", "GET"), ("app.views.view_1", "GET")]
    version, count, flat, cells = f.snapshot_flat()
    assert (version, count, len(flat)) == (3_000, 2, 6_000)
    assert cells == made and flat[2:4] == ["app.views.view_1", "GET"]


def test_family_keeps_values_whose_hashes_collide_apart(core):
    assert hash(-1) == hash(-2)  # CPython's: -1 is the error value of a C hash
    f = core.Family(lambda values: core.Counter())
    a, b = f.get((-1, "x")), f.get((-2, "x"))
    assert a is not b
    assert f.get((-1, "x")) is a and f.get((-2, "x")) is b

    class Same:  # every instance hashes alike; == compares the name (Python code)
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return 7

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Same) and other.name == self.name

    g = core.Family(lambda values: core.Counter())
    cells = [g.get((Same(str(i)),)) for i in range(40)]
    assert len({id(c) for c in cells}) == 40
    assert all(g.get((Same(str(i)),)) is cells[i] for i in range(40))
    g.remove((Same("3"),))
    assert len(g) == 39 and g.get((Same("3"),)) is not cells[3]


def test_family_looks_again_when_a_values_eq_changes_it(core):
    # A lookup that runs Python's == (a value that is not a str) may let the family change
    # under it (a rebuild frees the table with the GIL): it must look again, never read freed
    # memory, and find the right child.
    f = core.Family(lambda values: core.Counter())
    armed = []

    class Key:
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return 11

        def __eq__(self, other: object) -> bool:
            if armed:
                armed.pop()
                for i in range(200):  # several rebuilds (each frees the table before)
                    f.get((str(i),))
                f.remove((Key("b"),))  # the next key the lookup would compare, freed
            return isinstance(other, Key) and other.name == self.name

    a = f.get((Key("a"),))
    b = f.get((Key("b"),))
    armed.append(True)
    c = f.get((Key("c"),))  # compares with "a" first (the same hash), then "b"
    assert not armed
    assert len(f) == 202  # "a", 200 strings, "c": "b" was removed meanwhile
    assert f.get((Key("c"),)) is c and f.get((Key("a"),)) is a
    assert f.get((Key("b"),)) is not b
    assert c not in (a, b)


def test_family_remove_and_clear_then_add_again(core):
    f = core.Family(lambda values: core.Counter())
    cells = [f.get((str(i), "m")) for i in range(100)]
    for c in cells:
        c.inc()
    for i in range(0, 100, 3):
        f.remove((str(i), "m"))
    f.remove(("absent", "m"))
    assert len(f) == 66
    kept = [str(i) for i in range(100) if i % 3]
    assert [k[0] for k, _ in f.children()] == kept
    again = f.get(("0", "m"))
    assert again is not cells[0] and again.get() == 0.0
    assert f.get(("1", "m")) is cells[1]
    more = [f.get((f"n{i}", "m")) for i in range(300)]  # growths that drop the removed entries
    assert [k[0] for k, _ in f.children()] == [*kept, "0", *(f"n{i}" for i in range(300))]
    assert f.children()[-1][1] is more[-1]
    version = f.version
    f.clear()
    assert len(f) == 0 and f.children() == [] and f.snapshot_flat()[1:] == (0, [], [])
    assert f.version == version + 1
    fresh = f.get(("1", "m"))
    assert fresh is not cells[1] and fresh.get() == 0.0 and len(f) == 1


def test_family_aliases_raw_values_after_growth_and_removal(core):
    f = core.Family(lambda values: core.Counter())
    raw = ("a\0b", "c\rd")
    cell = f.get(raw)
    for i in range(500):
        f.get((str(i), "x"))
    assert f.get(raw) is cell
    assert f.get(("a\ufffdb", "c\ufffdd")) is cell
    assert f.children()[0] == (("a\ufffdb", "c\ufffdd"), cell)
    f.remove(raw)
    assert len(f) == 500
    assert f.get(raw) is not cell and len(f) == 501


def test_family_children_of_different_label_counts(core):
    # labels() always gives a family one count; a family used directly may mix them (the
    # compiled table takes its first child's count, the others live beside it).
    f = core.Family(lambda values: core.Counter())
    ab, a, none = f.get(("a", "b")), f.get(("a",)), f.get(())
    assert len({id(ab), id(a), id(none)}) == 3 and len(f) == 3
    assert f.get(("a",)) is a and f.get(()) is none and f.get(("a", "b")) is ab
    assert dict(f.children()) == {("a", "b"): ab, ("a",): a, (): none}
    version, count, keys, cells = f.snapshot_flat()
    assert count == -1 and dict(zip(keys, cells, strict=True)) == dict(f.children())
    f.remove(("a",))
    assert len(f) == 2 and f.get(("a",)) is not a
    f.clear()
    assert len(f) == 0
    one = f.get(("x",))
    assert f.get(("x",)) is one and f.snapshot_flat()[1:] == (1, ["x"], [one])


def test_family_scrapes_stay_consistent_while_threads_create_read_and_remove(core):
    # Threads making, reading and removing children while another scrapes: every snapshot
    # pairs each cell with its own label values, and nothing crashes (free-threaded builds:
    # the lock-free reads against replaced tables and removed cells).
    labels_of = {}
    lock = threading.Lock()

    def factory(values):
        cell = core.Counter()
        with lock:
            labels_of[id(cell)] = (values, cell)
        return cell

    f = core.Family(factory)
    stop = threading.Event()
    errors = []
    scrapes = [0]

    def maker(k: int) -> None:
        i = 0
        while not stop.is_set() and i < 20_000:
            f.get((f"t{k}", str(i))).inc()
            i += 1

    def reader() -> None:
        while not stop.is_set():
            for i in range(0, 400, 13):
                f.get(("t0", _runtime(str(i)))).inc()

    def remover() -> None:
        while not stop.is_set():
            for i in range(50):
                f.remove(("t1", str(i)))
            f.get(("t1", "0"))

    def scraper() -> None:
        try:
            while not stop.is_set() or scrapes[0] < 3:
                version, count, flat, cells = f.snapshot_flat()
                assert count in (0, 2) and len(flat) == count * len(cells)
                assert len({id(c) for c in cells}) == len(cells)
                for i, cell in enumerate(cells):
                    assert labels_of[id(cell)][0] == tuple(flat[2 * i : 2 * i + 2])
                pairs = f.children()
                assert len({key for key, _ in pairs}) == len(pairs)
                scrapes[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=t, args=a) for t, a in (
        (maker, (0,)), (maker, (1,)), (reader, ()), (remover, ()), (scraper, ()))]  # fmt: skip
    for t in threads:
        t.start()
    threads[0].join(timeout=1.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert scrapes[0] >= 3
    assert all(labels_of[id(cell)][0] == key for key, cell in f.children())


def test_family_creates_exactly_one_cell_under_contention(core):
    f = core.Family(lambda values: core.Counter())
    barrier = threading.Barrier(8)
    seen = []

    def worker():
        barrier.wait()
        for i in range(200):
            cell = f.get((str(i),))
            cell.inc()
            seen.append(cell)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(f) == 200
    assert all(cell.get() == 8.0 for _, cell in f.children())


def test_counter_loses_no_increment_across_threads(core):
    c = core.Counter()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force as many thread switches as possible
    try:
        threads = [threading.Thread(target=lambda: [c.inc() for _ in range(50_000)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert c.get() == 400_000


def test_dispatcher_honours_the_environment():
    import os

    from django_prometheus._core import _cells

    pure_requested = os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS", "") not in ("", "0")
    assert _cells.USE_EXTENSIONS is (not pure_requested)
    assert _cells.Counter is _cells._impl.Counter
