"""Native histograms under threads: observing while scrapes read, every scrape self-consistent.

Threads observe into one classic+native child and a second, labelled family
while another thread scrapes the registry in protobuf over and over: in every
scrape each histogram's ``sample_count`` is the observations its native buckets
hold (zero bucket included), which Prometheus checks when it ingests a native
histogram (a count below its buckets is refused), and nothing is lost at the end.
Meaningful without a GIL (``scripts/freethreaded.sh``): there the threads run at
once on every core.
"""

from __future__ import annotations

import os
import sysconfig
import threading

from prometheus_client import CollectorRegistry

from django_prometheus import metrics, protobuf
from tests.test_protobuf import decode, pb, populated  # noqa: F401

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
THREADS = 4
OPS = int(os.environ.get("DP_THREAD_OPS") or (200_000 if FREE_THREADED else 20_000))
# Values over 2**-12..2**12 on both sides of zero and zero itself: at 40 buckets the parts
# halve while the threads race (schema 3 -> 1).
VALUES = [0.0] + [s * 2.0 ** (e / 4) for e in range(-48, 49, 3) for s in (1, -1)]


def _native_count(h) -> int:
    pos = populated(h.positive_span, h.positive_delta)
    neg = populated(h.negative_span, h.negative_delta)
    return h.zero_count + sum(c for _, c in pos) + sum(c for _, c in neg)


def test_every_scrape_while_threads_observe_has_count_equal_to_its_native_buckets(pb):  # noqa: F811
    registry = CollectorRegistry()
    one = metrics.Histogram("nt_one", "One child.", registry=registry, native=True, native_max_buckets=40)
    many = metrics.Histogram(
        "nt_many", "Labelled.", ["t"], registry=registry, native=True, native_max_buckets=40
    )
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
