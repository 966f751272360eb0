"""Hot children under contention: threads count into one child while another thread scrapes.

On a free-threaded build the compiled cells stripe once they see contention (issue 28): a
child's writes spread over per-thread stripes that every read adds up. Whatever the build,
each scrape must be internally consistent (a histogram's ``_count`` equals its ``+Inf``
bucket, buckets are cumulative), values never go backwards between scrapes, and once the
writers stop nothing is lost. The observed values are exact binary fractions, so sums are
exact too.
"""

from __future__ import annotations

import sys
import threading
import types

import pytest
from django_prometheus._core import _cells
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import metrics, text_format

WRITERS = 4
OPS = 6_000  # a multiple of len(VALUES): each writer observes each value OPS / 6 times
BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0)
VALUES = (0.125, 0.5, 0.75, 1.5, 3.0, 8.0)  # every bucket but one, and +Inf


@pytest.fixture
def switchy():
    """Switch threads as often as possible on a GIL build (free-threaded ones run in parallel)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _family(registry: CollectorRegistry, stripe: bool) -> tuple:
    requests = metrics.Counter("stress_requests", "Requests.", ["view"], registry=registry)
    latency = metrics.Histogram(
        "stress_latency_seconds", "Latency.", ["view"], buckets=BUCKETS, registry=registry
    )
    counter, histogram = requests.labels("hot"), latency.labels("hot")
    if stripe:  # as contention would, so the striped paths run whatever the scheduler does
        assert counter._stripe() == histogram._stripe() == bool(_cells._impl.STRIPES)
    return counter, histogram


def _parse(body: bytes, openmetrics: bool) -> dict:
    parse = om_families if openmetrics else text_string_to_metric_families
    samples = {}
    for family in parse(body.decode()):
        for s in family.samples:
            if s.labels.get("view") == "hot":
                samples[(s.name, s.labels.get("le"))] = s.value
    return samples


def _check(scrape: dict, last: dict) -> None:
    les = [repr(b) for b in BUCKETS] + ["+Inf"]
    buckets = [scrape[("stress_latency_seconds_bucket", le)] for le in les]
    assert buckets == sorted(buckets), f"buckets not cumulative: {buckets}"
    assert scrape[("stress_latency_seconds_count", None)] == buckets[-1]
    for key, value in scrape.items():
        if not key[0].endswith("_created"):
            assert value >= last.get(key, 0.0), f"{key} went back from {last[key]} to {value}"


@pytest.mark.parametrize("stripe", [False, True], ids=["contention", "striped"])
@pytest.mark.parametrize("writer", ["text", "openmetrics", "generate_latest"])
def test_every_scrape_is_consistent_while_threads_count_into_one_child(switchy, stripe, writer):
    registry = CollectorRegistry()
    counter, histogram = _family(registry, stripe)
    render = {
        "text": lambda: text_format.render(registry),
        "openmetrics": lambda: text_format.render(registry, openmetrics_format=True),
        "generate_latest": lambda: generate_latest(registry),
    }[writer]
    barrier = threading.Barrier(WRITERS + 1)

    def write(k: int) -> None:
        barrier.wait()
        if k % 2:  # half the writers call the child's methods, half their own bound methods
            for i in range(OPS):
                counter.inc()
                histogram.observe(VALUES[(i + k) % len(VALUES)])
            return
        inc, observe = counter.inc, histogram.observe
        for i in range(OPS):
            inc()
            observe(VALUES[(i + k) % len(VALUES)])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(WRITERS)]
    for t in threads:
        t.start()
    barrier.wait()
    last: dict = {}
    scrapes = 0
    while any(t.is_alive() for t in threads) or not scrapes:
        scrape = _parse(render(), writer == "openmetrics")
        _check(scrape, last)
        last = scrape
        scrapes += 1
    for t in threads:
        t.join()
    final = _parse(render(), writer == "openmetrics")
    _check(final, last)
    total = WRITERS * OPS
    assert final[("stress_requests_total", None)] == total
    assert final[("stress_latency_seconds_count", None)] == total
    per_value = total // len(VALUES)
    assert final[("stress_latency_seconds_sum", None)] == per_value * sum(VALUES)
    assert final[("stress_latency_seconds_bucket", "0.25")] == per_value
    assert final[("stress_latency_seconds_bucket", "4.0")] == 5 * per_value
    assert counter.get() == histogram.count == total
    assert histogram.buckets()[-1] == total


def test_cells_stripe_only_where_the_build_has_no_gil():
    counter = metrics.Counter("stress_stripes", "S.", ["view"], registry=CollectorRegistry()).labels("x")
    histogram = metrics.Histogram(
        "stress_stripes_seconds", "S.", ["view"], registry=CollectorRegistry()
    ).labels("x")
    free_threaded = not getattr(sys, "_is_gil_enabled", lambda: True)()
    if not _cells.USE_EXTENSIONS or not free_threaded:
        assert _cells._impl.STRIPES == 0
    assert not counter._striped() and not histogram._striped()
    counter.inc(2.5)
    histogram.observe(0.3)
    striped = counter._stripe()
    assert striped == histogram._stripe() == bool(_cells._impl.STRIPES)
    assert counter._striped() == histogram._striped() == striped
    # The values counted before striping stay; the stripes add to them.
    counter.inc(0.5)
    histogram.observe(20.0)
    assert counter.get() == 3.0
    assert histogram.sum == 20.3
    assert histogram.count == 2.0
    assert histogram.buckets()[-1] == 2.0
    if striped:
        assert _cells._impl.STRIPES >= 4 and _cells._impl.STRIPES & (_cells._impl.STRIPES - 1) == 0


def test_a_striped_child_is_immortal_on_free_threaded_3_13():
    """A hot child's header is not written by every call from every thread.

    On a free-threaded 3.13, ``child.inc()`` takes a reference to the child: an atomic add to
    the child's shared reference count from every thread but the one that made it, the cache
    line of the child's own pointer to its stripes. Two threads calling ``child.inc()`` then
    did 0.64x-0.79x one thread's work, striped or not. A striped child is immortal there, as
    CPython 3.13t makes the functions, types and modules threads share; elsewhere it is
    counted as any object (3.14's deferred counting needs a GC type, which a counter is not).
    """
    counter = metrics.Counter("stress_immortal", "S.", ["view"], registry=CollectorRegistry()).labels("x")
    histogram = metrics.Histogram(
        "stress_immortal_seconds", "S.", ["view"], registry=CollectorRegistry()
    ).labels("x")
    assert sys.getrefcount(counter) < 100 and sys.getrefcount(histogram) < 100
    striped = counter._stripe() and histogram._stripe()
    immortal = striped and sys.version_info[:2] == (3, 13)
    for cell in (counter, histogram):
        assert (sys.getrefcount(cell) > 2**30) == immortal, sys.getrefcount(cell)
    counter.inc(2.0)
    histogram.observe(0.5)
    assert counter.get() == 2.0 and histogram.count == 1.0


# The methods a hot path calls on a shared child or family.
HOT_METHODS = {
    "Counter": ("inc", "get"),
    "Gauge": ("inc", "dec", "set", "get"),
    "Histogram": ("observe",),
    "Family": ("get",),
}

INSTANCES = {
    "Counter": lambda: _cells.Counter(),
    "Gauge": lambda: _cells.Gauge(),
    "Histogram": lambda: _cells.Histogram((1.0, float("inf"))),
    "Family": lambda: _cells.Family(lambda values: _cells.Counter()),
}


@pytest.mark.parametrize("cls", sorted(HOT_METHODS))
def test_hot_methods_are_plain_descriptors(cls):
    """No per-call write to a function object that every thread shares.

    The compiled cells' methods are method descriptors, as CPython's own types' are
    (immortal on a free-threaded 3.13 once a second thread has started), not Cython function
    objects: calling one of those from two threads wrote its reference count on every call
    (``child.inc()`` takes a reference to the function found on the type; a bound
    ``child.inc`` is a method object whose call takes one to the function and one to the
    child), so two threads counting into two distinct children did 0.61x one thread's work.
    The pure twin's are plain functions of a module-level class (immortal there too).
    """
    for name in HOT_METHODS[cls]:
        attr = vars(getattr(_cells, cls))[name]
        if _cells.USE_EXTENSIONS:
            assert type(attr) is types.MethodDescriptorType, f"{cls}.{name} is a {type(attr).__name__}"
            assert type(getattr(INSTANCES[cls](), name)) is types.BuiltinMethodType
        else:
            assert type(attr) is types.FunctionType
