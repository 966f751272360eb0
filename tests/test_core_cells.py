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
