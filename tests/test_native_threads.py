"""Native histograms under threads: observing while scrapes read, every scrape self-consistent.

Threads observe into one classic+native child and a second, labelled family
while another thread scrapes the registry in protobuf over and over: in every
scrape each histogram's ``sample_count`` is the observations its native buckets
hold (zero bucket included), which Prometheus checks when it ingests a native
histogram (a count below its buckets is refused), and nothing is lost at the end.
The core's own reads (``state()``, the encoder) race observing threads too, on both
cores: every read is a histogram the observations could have made at some instant
(buckets only grow until a halving merges them), and the end state is exactly a
one-thread replay's. Meaningful without a GIL (``scripts/freethreaded.sh``): there
the threads run at once on every core, and the compiled part's observers take no
lock (``_native_c``'s gate) while a halving or a new bucket makes them wait.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time

import pytest
from django_prometheus._core import _native
from prometheus_client import CollectorRegistry

from django_prometheus import metrics, protobuf
from tests.test_protobuf import decode, pb, populated  # noqa: F401

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
THREADS = 4
OPS = int(os.environ.get("DP_THREAD_OPS") or (200_000 if FREE_THREADED else 20_000))
# Values over 2**-12..2**12 on both sides of zero and zero itself: at 40 buckets the parts
# halve while the threads race (schema 3 -> 1).
VALUES = [0.0] + [s * 2.0 ** (e / 4) for e in range(-48, 49, 3) for s in (1, -1)]


@pytest.fixture
def native(twin):
    """One core's native module (conftest's ``twin``: compiled and pure)."""
    return twin.native


@pytest.fixture
def switch_often():
    # Under a GIL, threads take turns every few microseconds instead of every 5 ms.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _at(native, state, schema):
    """``state`` brought down to ``schema`` (neighbouring buckets merged)."""
    return native.merge_states([state, (schema, state[1], 0, [], [])])


def _check_read(native, pb, part, previous):  # noqa: F811
    """One read of ``part`` racing the observers: well formed, and no bucket below the previous read's."""
    state = part.state()
    schema, zt, zero, pos, neg = state
    for side in (pos, neg):
        keys = [k for k, _ in side]
        assert keys == sorted(set(keys)), "bucket keys out of order or repeated"
        assert all(c > 0 for _, c in side), "an unpopulated bucket was read"
    if previous is not None:
        assert schema <= previous[0], "the schema went up"
        before = _at(native, previous, schema)
        assert zero >= before[2]
        for was, side in ((before[3], pos), (before[4], neg)):
            counts = dict(side)
            shrunk = [(k, c, counts.get(k, 0)) for k, c in was if counts.get(k, 0) < c]
            assert not shrunk, f"buckets (key, was, now) shrank between two reads: {shrunk[:3]}"
    # The encoder's own read: its sample_count is its native buckets' total.
    h = pb.Histogram()
    h.ParseFromString(native.encode_histogram(0, None, [], [], None, part, None))
    assert h.sample_count == _native_count(h)
    return state


@pytest.mark.parametrize("stripe", [False, True], ids=["contention", "striped"])
def test_reads_racing_observing_threads_are_consistent_and_the_end_state_exact(
    native,
    pb,  # noqa: F811
    switch_often,
    stripe,
):
    ops = OPS // 4
    part = native.NativeHistogram(3, 2.0**-128, 40)
    if stripe:  # as contention would (compiled, free-threaded): reads merge the stripes
        if not native.STRIPES:
            pytest.skip("parts never stripe here (a GIL build, or the pure twin): the other case runs")
        assert part._stripe() and part._striped()
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    reads: list[int] = []

    def observe(n: int) -> None:
        start.wait()
        seen = 0
        for i in range(ops):
            part.observe(VALUES[(i * 7 + n) % len(VALUES)])
            if i % 500 == 499:
                # A few thousand compiled observations take a millisecond: without a turn for
                # the reader now and then, a busy machine can let them all finish between two
                # of its reads. Each thread waits here for one more read (the others observe
                # meanwhile), so reads race observations wherever the scheduler puts them.
                deadline = time.monotonic() + 10
                while len(reads) <= seen and time.monotonic() < deadline:
                    time.sleep(0.0002)
                seen = len(reads)

    def read() -> None:
        start.wait()
        previous = None
        while True:
            last = done.is_set()
            previous = _check_read(native, pb, part, previous)
            reads.append(previous[2] + sum(c for _, c in previous[3]) + sum(c for _, c in previous[4]))
            if last:
                return

    threads = [threading.Thread(target=observe, args=(n,)) for n in range(THREADS)]
    reader = threading.Thread(target=read)
    for t in [*threads, reader]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert len(reads) > 3, "the reader never ran while the threads observed"
    assert reads == sorted(reads)
    assert reads[-1] == part.count == THREADS * ops
    # Halving commutes with counting: one thread observing the same values at schema 3 with
    # no bucket limit, brought down to the racing part's final schema, is the same histogram.
    replay = native.NativeHistogram(3, 2.0**-128, 0)
    for n in range(THREADS):
        for i in range(ops):
            replay.observe(VALUES[(i * 7 + n) % len(VALUES)])
    assert part.schema < 3
    assert part.state() == _at(native, replay.state(), part.schema)


def test_a_striped_part_reads_as_one_part_observing_everything(native):
    """Stripes hold the observations; every read merges them (lowest schema, bucket limit kept).

    A part striped up front (compiled, free-threaded; elsewhere the part just counts)
    observes from several threads; its state, count, zero count and schema are those of one
    part that observed the same values, brought to the same schema, and its schema is the
    one the bucket limit leaves.
    """
    part = native.NativeHistogram(3, 2.0**-128, 20)
    striped = part._stripe()
    assert striped == part._striped() == bool(native.STRIPES)
    values = VALUES[::2]  # 0.0 and 2**-12 .. 2**12, both sides: more than 20 buckets at schema 3

    def observe(n: int) -> None:
        for i in range(400):
            part.observe(values[(i * 5 + n) % len(values)])

    threads = [threading.Thread(target=observe, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replay = native.NativeHistogram(3, 2.0**-128, 0)
    for n in range(THREADS):
        for i in range(400):
            replay.observe(values[(i * 5 + n) % len(values)])
    state = part.state()
    assert state == _at(native, replay.state(), state[0])
    assert len(state[3]) + len(state[4]) <= 20 and state[0] < 3
    assert part.schema == state[0]
    assert part.count == THREADS * 400 == replay.count
    assert part.zero_count == replay.zero_count > 0
    h = native.encode_histogram(0, None, [], [], None, part, None)
    assert h == native.encode_histogram(0, None, [], [], None, state, None)
    part.reset()
    assert part.count == part.zero_count == 0 and part.state()[3:] == ([], [])


def _native_count(h) -> int:
    pos = populated(h.positive_span, h.positive_delta)
    neg = populated(h.negative_span, h.negative_delta)
    return h.zero_count + sum(c for _, c in pos) + sum(c for _, c in neg)


@pytest.mark.parametrize("stripe", [False, True], ids=["contention", "striped"])
def test_every_scrape_while_threads_observe_has_count_equal_to_its_native_buckets(pb, stripe):  # noqa: F811
    registry = CollectorRegistry()
    one = metrics.Histogram("nt_one", "One child.", registry=registry, native=True, native_max_buckets=40)
    many = metrics.Histogram(
        "nt_many", "Labelled.", ["t"], registry=registry, native=True, native_max_buckets=40
    )
    if stripe:
        if not _native._impl.STRIPES:
            pytest.skip("parts never stripe here (a GIL build, or the pure twin): the other case runs")
        for child in (one._cell, many.labels("0"), many.labels("1")):
            assert child.native._stripe()
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    scrapes: list[tuple[int, int, int]] = []  # (family index, sample_count, native buckets' count)

    def observe(n: int) -> None:
        child = many.labels(str(n % 2))
        start.wait()
        for i in range(OPS):
            v = VALUES[(i * 7 + n) % len(VALUES)]
            one.observe(v)
            child.observe(v)

    def scrape() -> None:
        start.wait()
        while True:
            last = done.is_set()
            for f in decode(pb, protobuf.render(registry)):
                for m in f.metric:
                    h = m.histogram
                    scrapes.append((f.name == "nt_many", h.sample_count, _native_count(h)))
            if last:
                return

    threads = [threading.Thread(target=observe, args=(n,)) for n in range(THREADS)]
    scraper = threading.Thread(target=scrape)
    for t in [*threads, scraper]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    scraper.join()
    bad = [s for s in scrapes if s[1] != s[2]]
    assert len(scrapes) > 3, "the scraper never ran while the threads observed"
    assert not bad, f"{len(bad)} of {len(scrapes)} scraped histograms disagree, e.g. {bad[:3]}"
    # The last scrape began after every thread had finished: nothing lost.
    half = THREADS * OPS // 2  # two threads per child of the labelled family
    total = THREADS * OPS
    assert sorted(scrapes[-3:]) == [(False, total, total), (True, half, half), (True, half, half)]
    assert one._cell.native.schema < 3  # the parts halved while scraped


def test_threads_writing_a_native_part_through_to_its_file_lose_nothing(tmp_path):
    # Multiprocess mode's write-through (new entries, halvings and their marks) under racing
    # threads: the file's merge is exactly what the part holds, which holds every observation.
    from django_prometheus._core import _native, _native_files

    from django_prometheus import multiprocess

    files = _native_files.NativeFiles(str(tmp_path))
    parts = []
    for n in range(2):
        nh = _native.NativeHistogram(3, 0.0, 40)
        nh.attach(files, _native_files.child_prefix("nt", ["t"], [str(n)]))
        parts.append(nh)
    start = threading.Barrier(THREADS)

    def observe(n: int) -> None:
        start.wait()
        for i in range(OPS):
            parts[i % 2].observe(VALUES[(i * 7 + n) % len(VALUES)])

    threads = [threading.Thread(target=observe, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = multiprocess.native_states(multiprocess._native_scrape_files(str(tmp_path)))
    for n, nh in enumerate(parts):
        assert nh.count == THREADS * OPS // 2
        assert nh.schema < 3
        assert states["nt", (("t", str(n)),)] == nh.state()
