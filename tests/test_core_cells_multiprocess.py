"""Multiprocess cells, both cores: they write files that prometheus_client's collector sums unchanged."""

from __future__ import annotations

import os
import struct
import warnings

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

INF = float("inf")


@pytest.fixture
def core(twin):
    return twin.cells


@pytest.fixture
def store(core, tmp_path):
    s = core.MultiProcessStore(str(tmp_path))
    yield s
    s.close()


def collected(path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


def counter_key(name: str, **labels: str) -> str:
    return mmap_key(name, name + "_total", list(labels), list(labels.values()), "help")


def histogram(store, name: str, bounds=(0.1, 1.0, INF)):
    les = ["0.1", "1.0", "+Inf"]
    return store.histogram(
        bounds,
        [mmap_key(name, name + "_bucket", ["le"], [le], "help") for le in les],
        mmap_key(name, name + "_sum", [], [], "help"),
    )


def fork_and_run(fn) -> None:
    """Run ``fn`` in a forked child (Python's fork hooks run), wait for it to exit cleanly."""
    if not hasattr(os, "fork"):  # the wheel check also runs on Windows
        pytest.skip("no fork() on this platform")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process" notice
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_counter_increments_are_summed_by_the_collector(store, tmp_path):
    c = store.counter(counter_key("django_x", backend="a"))
    c.inc()
    c.inc(2.5)
    assert c.get() == 3.5
    assert collected(tmp_path).get_sample_value("django_x_total", {"backend": "a"}) == 3.5
    with pytest.raises(ValueError):
        c.inc(-1)
    assert collected(tmp_path).get_sample_value("django_x_total", {"backend": "a"}) == 3.5


def test_file_is_prometheus_client_format_under_our_own_name(store, tmp_path):
    store.counter(counter_key("django_x", backend="a")).inc(7)
    (name,) = os.listdir(tmp_path)
    assert name == f"counter_django_{os.getpid()}.db"
    values = list(MmapedDict.read_all_values_from_file(str(tmp_path / name)))
    assert [(k, v) for k, v, _ts, _pos in values] == [(counter_key("django_x", backend="a"), 7.0)]


def test_a_new_cell_shows_zero_before_any_increment(store, tmp_path):
    store.counter(counter_key("django_y"))
    assert collected(tmp_path).get_sample_value("django_y_total") == 0.0


def test_histogram_buckets_and_sum_match_prometheus_client(store, tmp_path):
    h = histogram(store, "django_lat")
    for v in (0.05, 0.1, 0.5, 5.0, float("nan")):
        h.observe(v)
    r = collected(tmp_path)
    assert r.get_sample_value("django_lat_bucket", {"le": "0.1"}) == 2.0
    assert r.get_sample_value("django_lat_bucket", {"le": "1.0"}) == 3.0
    assert r.get_sample_value("django_lat_bucket", {"le": "+Inf"}) == 4.0  # NaN lands in no bucket
    assert r.get_sample_value("django_lat_count") == 4.0
    assert h.buckets() == [2.0, 3.0, 4.0]
    assert h.count == 4.0


def test_histogram_needs_one_key_per_bucket(store):
    with pytest.raises(ValueError):
        store.histogram((0.1, INF), ["only-one"], "sum")


def test_cells_created_before_the_file_grows_keep_counting(store, tmp_path):
    # 64 KiB initially; ~1,500 long keys force the file (and its mapping) to grow twice.
    first = store.counter(counter_key("django_first"))
    first.inc()
    many = [store.counter(counter_key("django_" + "m" * 60, i=str(i))) for i in range(1500)]
    assert os.path.getsize(tmp_path / f"counter_django_{os.getpid()}.db") > 1 << 17
    first.inc(2)
    for i, cell in enumerate(many):
        cell.inc(i)
    samples = {
        (s.name, s.labels.get("i")): s.value for m in collected(tmp_path).collect() for s in m.samples
    }  # one collection: get_sample_value() would re-read the files per call
    assert samples[("django_first_total", None)] == 3.0
    assert [samples["django_" + "m" * 60 + "_total", str(i)] for i in range(1500)] == list(
        map(float, range(1500))
    )


def test_counted_get_counts_into_the_files(twin, store, tmp_path):
    gets, hits, misses, fails = (
        store.counter(counter_key(f"django_cache_{n}")) for n in ("g", "h", "m", "f")
    )
    data = {"k": 0}

    def real_get(key, default, version):
        return data.get(key, default)

    get = twin.cache.count_get(real_get, gets, hits, misses, fails)
    assert get("k") == 0
    assert get("absent", "dflt") == "dflt"
    twin.cache.count_get_many(["k", "x", "k"], 1, gets, hits, misses)
    r = collected(tmp_path)
    assert [r.get_sample_value(f"django_cache_{n}_total") for n in ("g", "h", "m", "f")] == [
        4.0,
        2.0,
        2.0,
        0.0,
    ]


def test_a_forked_child_counts_in_its_own_file_and_the_sum_is_exact(store, tmp_path):
    c = store.counter(counter_key("django_req"))
    h = histogram(store, "django_lat")
    c.inc(5)
    h.observe(0.05)

    def child():
        assert c.get() == 0.0  # the parent's counts stay in the parent's file
        c.inc(100)
        h.observe(0.5)

    fork_and_run(child)
    c.inc()
    assert len(os.listdir(tmp_path)) == 4  # counter and histogram files for both pids
    r = collected(tmp_path)
    assert r.get_sample_value("django_req_total") == 106.0
    assert r.get_sample_value("django_lat_count") == 2.0
    assert r.get_sample_value("django_lat_bucket", {"le": "0.1"}) == 1.0
    assert c.get() == 6.0


def test_check_pid_moves_cells_when_no_fork_hook_ran(core, store, tmp_path):
    # uWSGI forks without Python's hooks; the per-request check_pid() catches it.
    c = store.counter(counter_key("django_req"))
    c.inc(2)
    parent = os.getpid()
    store.check_pid()  # same process: nothing to do
    assert store.pid == parent

    def child():
        assert store.pid == parent  # the hook skipped this store, as if it never ran
        store.check_pid()
        assert store.pid == os.getpid()
        assert c.get() == 0.0
        c.inc(10)

    core._STORES.discard(store)
    try:
        fork_and_run(child)
    finally:
        core._STORES.add(store)
    c.inc(1)
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"counter_django_{p}.db" for p in (parent, pid_of_other(tmp_path))
    )
    assert collected(tmp_path).get_sample_value("django_req_total") == 13.0


def test_a_fork_that_skips_pythons_hooks_moves_the_cells_at_their_first_write(core, store, tmp_path):
    # uWSGI forks its workers with libc's fork(), so os.register_at_fork hooks never run there.
    # The compiled store sees such a fork itself (a pthread_atfork handler): no check_pid() needed.
    # The pure one relies on check_pid(), once per request (django_prometheus.metrics wires it).
    if not hasattr(os, "fork"):
        pytest.skip("no fork() on this platform")
    import ctypes

    c = store.counter(counter_key("django_req"))
    h = histogram(store, "django_lat")
    c.inc(2)
    h.observe(0.05)
    parent = os.getpid()
    libc_fork = ctypes.PyDLL(None).fork  # PyDLL: the GIL stays held across the call, as in uWSGI
    libc_fork.restype = ctypes.c_int
    pid = libc_fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if not store.watches_forks:
                store.check_pid()
            c.inc(10)
            h.observe(0.5)
            code = 0 if (c.get(), h.count) == (10.0, 1.0) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    c.inc(1)
    assert (c.get(), h.count) == (3.0, 1.0)  # the child wrote nothing into this process' slots
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"{typ}_django_{p}.db" for p in (parent, pid) for typ in ("counter", "histogram")
    )
    r = collected(tmp_path)
    assert r.get_sample_value("django_req_total") == 13.0
    assert r.get_sample_value("django_lat_count") == 2.0
    assert r.get_sample_value("django_lat_bucket", {"le": "0.1"}) == 1.0


def pid_of_other(path) -> int:
    (other,) = {int(n.rsplit("_", 1)[1][:-3]) for n in os.listdir(path)} - {os.getpid()}
    return other


def test_a_recycled_pid_appends_to_the_file_it_finds(core, tmp_path):
    first = core.MultiProcessStore(str(tmp_path))
    first.counter(counter_key("django_a")).inc(4)
    first.close()
    second = core.MultiProcessStore(str(tmp_path))
    a = second.counter(counter_key("django_a"))
    b = second.counter(counter_key("django_b"))
    assert a.get() == 4.0  # read back, like prometheus_client's values
    a.inc()
    b.inc(2)
    second.close()
    (name,) = os.listdir(tmp_path)
    keys = [k for k, *_ in MmapedDict.read_all_values_from_file(str(tmp_path / name))]
    assert keys == [counter_key("django_a"), counter_key("django_b")]  # no duplicate entry
    r = collected(tmp_path)
    assert (r.get_sample_value("django_a_total"), r.get_sample_value("django_b_total")) == (5.0, 2.0)


def test_closing_the_store_detaches_cells_safely(core, tmp_path):
    s = core.MultiProcessStore(str(tmp_path))
    c = s.counter(counter_key("django_a"))
    h = histogram(s, "django_lat")
    c.inc(3)
    h.observe(0.5)
    before = generate_latest(collected(tmp_path))
    s.close()
    c.inc()
    h.observe(0.5)
    assert c.get() == 4.0
    assert h.count == 2.0
    assert generate_latest(collected(tmp_path)) == before
    with pytest.raises(RuntimeError):
        s.counter(counter_key("django_b"))


def test_family_passes_label_values_to_the_factory(core):
    seen = []
    f = core.Family(lambda values: seen.append(values) or core.Counter())
    assert f.get(("a", "b")) is f.get(("a", "b"))
    assert seen == [("a", "b")]


def test_both_cores_write_the_same_bytes_where_a_leftover_file_ends_off_the_8_byte_grid(
    compiled_twin, pure_twin, tmp_path
):
    # Files of this pid whose "bytes used" header is not a multiple of 8 (neither prometheus_client
    # nor we write one): the entries appended after it have their values off the 8-byte grid, and
    # both cores must still write them where they belong (the pure one through a view at that offset).
    written = []
    for twin in (compiled_twin, pure_twin):
        directory = tmp_path / twin.kind
        directory.mkdir()
        leftover = bytearray(1 << 16)
        leftover[0:4] = (12).to_bytes(4, "little")
        for typ in ("counter", "histogram"):
            (directory / f"{typ}_django_{os.getpid()}.db").write_bytes(bytes(leftover))
        s = twin.cells.MultiProcessStore(str(directory))
        c = s.counter(counter_key("django_a"))
        h = histogram(s, "django_lat")
        c.inc(3)
        h.observe(0.5)
        h.observe(7.0)
        assert (c.get(), h.sum, h.count) == (3.0, 7.5, 2.0)
        s.close()
        written.append({n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))})
    assert written[0] == written[1]
    counters, histograms = written[1].values()
    assert counters.index(struct.pack("d", 3.0)) % 8 == 4
    assert histograms.index(struct.pack("d", 7.5)) % 8 == 4
