"""PROMETHEUS_CACHE_OPERATION_METRICS: every operation per alias, on every backend, against real servers.

Each backend is created by a fresh ``CacheHandler`` (as Django creates it, so it
learns its alias) with the setting on; every call is compared with Django's own
uninstrumented backend, and the exact deltas of the operation families, and of
upstream's four, are asserted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest
from django.core.cache import CacheHandler, caches
from django.test import override_settings
from prometheus_client import REGISTRY

from tests.test_cache import LABELS, SERVICE, Delta, outcome, run_isolated

OPS = "django_cache_operations_total"
DURATION = "django_cache_operation_duration_seconds"
ON = override_settings(PROMETHEUS_CACHE_OPERATION_METRICS=True)


def op_counts(alias: str, backend: str) -> dict[tuple[str, str], float]:
    out = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == OPS and s.labels["alias"] == alias and s.labels["backend"] == backend:
                out[s.labels["operation"], s.labels["result"]] = s.value
    return out


def durations(alias: str, backend: str) -> dict[str, float]:
    out = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if (
                s.name == DURATION + "_count"
                and s.labels["alias"] == alias
                and s.labels["backend"] == backend
            ):
                out[s.labels["operation"]] = s.value
    return out


class OpDelta:
    """Non-zero deltas of django_cache_operations_total for one (alias, backend), by (operation, result)."""

    def __init__(self, alias: str, backend: str) -> None:
        self.alias, self.backend = alias, backend
        self.start = op_counts(alias, backend)
        self.start_durations = durations(alias, backend)

    def __call__(self) -> dict[tuple[str, str], float]:
        now = op_counts(self.alias, self.backend)
        return {k: v - self.start.get(k, 0.0) for k, v in now.items() if v - self.start.get(k, 0.0)}

    def timed(self) -> dict[str, float]:
        now = durations(self.alias, self.backend)
        return {
            k: v - self.start_durations.get(k, 0.0)
            for k, v in now.items()
            if v - self.start_durations.get(k, 0.0)
        }


def make(alias: str, on: bool = True):
    """A new backend for ``alias``, made by Django's cache handler, with the setting on or off."""
    with override_settings(PROMETHEUS_CACHE_OPERATION_METRICS=on):
        return CacheHandler()[alias]


@pytest.fixture(params=list(LABELS))
def trio(request, require_service):
    """(name, ours with operation metrics, ours without, Django's own) for one backend."""
    name = request.param
    if name in SERVICE:
        require_service(SERVICE[name])
    on, off, bare = make(name), make(name, on=False), caches[f"{name}_bare"]
    for cache in (on, off, bare):
        cache.clear()
    yield name, on, off, bare
    for cache in (on, off, bare):
        cache.clear()
        cache.close()


# (operation, args, the results it records)
SCRIPT = [
    ("set", ("k", 1), {("set", "ok"): 1}),
    ("add", ("k", 2), {("add", "ok"): 1}),
    ("add", ("fresh", 2), {("add", "ok"): 1}),
    ("get", ("k",), {("get", "hit"): 1}),
    ("get", ("absent", "d"), {("get", "miss"): 1}),
    ("get_many", (["k", "absent", "k", "fresh"],), {("get_many", "hit"): 2, ("get_many", "miss"): 1}),
    ("has_key", ("k",), {("has_key", "hit"): 1}),
    ("has_key", ("absent",), {("has_key", "miss"): 1}),
    ("incr", ("k", 5), {("incr", "ok"): 1}),
    ("decr", ("k", 2), {("decr", "ok"): 1}),
    ("incr", ("absent",), {("incr", "error"): 1}),
    ("touch", ("k", 60), {("touch", "ok"): 1}),
    ("set_many", ({"a": 1, "b": 2},), {("set_many", "ok"): 1}),
    ("delete_many", (["a", "b"],), {("delete_many", "ok"): 1}),
    ("delete", ("k",), {("delete", "ok"): 1}),
    ("get", ("k", "gone"), {("get", "miss"): 1}),
    ("clear", (), {("clear", "ok"): 1}),
]


def _run(cache, op, args):
    return outcome(lambda: getattr(cache, op)(*args))


@pytest.mark.parametrize("step", range(len(SCRIPT)), ids=[f"{i}-{s[0]}" for i, s in enumerate(SCRIPT)])
def test_each_sync_operation_is_counted_once_with_its_result(trio, step):
    name, on, off, bare = trio
    for op, args, _ in SCRIPT[:step]:  # the state the step runs in
        for cache in (on, bare):
            _run(cache, op, args)
    op, args, expected = SCRIPT[step]
    delta = OpDelta(name, LABELS[name])
    assert _run(on, op, args) == _run(bare, op, args)
    assert delta() == expected
    assert delta.timed() == {op: 1}


def test_upstream_families_count_what_they_count_with_the_setting_off(trio):
    name, on, off, _ = trio
    counted = []
    for cache in (on, off):
        before = Delta(LABELS[name])
        for op, args, _ in SCRIPT:
            _run(cache, op, args)
        counted.append(before())
    assert counted[0] == counted[1]
    assert counted[0][0] > 0


def test_async_twins_are_counted_once_as_themselves(trio):
    name, on, _, bare = trio

    async def scenario(cache):
        return [
            await cache.aset("k", 1),
            await cache.aadd("k", 2),
            await cache.aget("k"),
            await cache.aget("absent", "d"),
            await cache.aget_many(["k", "absent"]),
            await cache.ahas_key("k"),
            await cache.ahas_key("absent"),
            await cache.aincr("k", 3),
            await cache.adecr("k"),
            await cache.atouch("k", 60),
            await cache.aset_many({"a": 1}),
            await cache.adelete_many(["a"]),
            await cache.adelete("k"),
            await cache.aget_or_set("made", "v"),
            await cache.aclear(),
        ]

    delta = OpDelta(name, LABELS[name])
    upstream = Delta(LABELS[name])
    ours = asyncio.run(scenario(on))
    assert ours == asyncio.run(scenario(bare))
    assert delta() == {
        ("aset", "ok"): 1, ("aadd", "ok"): 2, ("aget", "hit"): 1, ("aget", "miss"): 2,
        ("aget_many", "hit"): 1, ("aget_many", "miss"): 1, ("ahas_key", "hit"): 1, ("ahas_key", "miss"): 1,
        ("aincr", "ok"): 1, ("adecr", "ok"): 1, ("atouch", "ok"): 1, ("aset_many", "ok"): 1,
        ("adelete_many", "ok"): 1, ("adelete", "ok"): 1, ("aclear", "ok"): 1,
    }  # fmt: skip
    # Upstream's families still count the gets the twins make underneath.
    gets, hits, misses, fails = upstream()
    assert gets >= 5 and gets == hits + misses and fails == 0


def test_get_many_counts_each_distinct_key_and_reads_a_generator_once(trio):
    name, on, _, bare = trio
    for cache in (on, bare):
        cache.set_many({"a": 1, "b": None, "c": 0})
    delta = OpDelta(name, LABELS[name])
    got = on.get_many(k for k in ["a", "b", "c", "x", "a"])
    assert got == bare.get_many(k for k in ["a", "b", "c", "x", "a"]) == {"a": 1, "b": None, "c": 0}
    assert delta() == {("get_many", "hit"): 3, ("get_many", "miss"): 1}


def test_get_or_set_is_a_get_and_an_add(trio):
    name, on, _, bare = trio
    delta = OpDelta(name, LABELS[name])
    assert on.get_or_set("k", lambda: "made") == bare.get_or_set("k", lambda: "made") == "made"
    assert on.get_or_set("k", "other") == "made"
    assert delta() == {("get", "miss"): 1, ("add", "ok"): 1, ("get", "hit"): 1}


@pytest.fixture(params=[n for n in LABELS if n in SERVICE])
def dead(request):
    name = request.param
    # Fresh ones both: memcached clients remember a dead server for a while.
    ours, bare = make(f"{name}_dead"), CacheHandler()[f"{name}_dead_bare"]
    yield name, ours, bare
    ours.close()
    bare.close()


@pytest.mark.parametrize("op,args", [(op, args) for op, args, _ in SCRIPT if op not in ("get_many",)])
def test_a_failing_server_counts_an_error_and_behaves_like_django(dead, op, args):
    name, ours, bare = dead
    delta = OpDelta(f"{name}_dead", LABELS[name])
    got = _run(ours, op, args)
    assert got == _run(bare, op, args)
    assert got[0] == "raised"
    assert delta() == {(op, "error"): 1}


def test_a_failing_get_many_counts_each_key_as_an_error(dead):
    name, ours, bare = dead
    delta = OpDelta(f"{name}_dead", LABELS[name])
    got = _run(ours, "get_many", (["a", "b", "a"],))
    assert got == _run(bare, "get_many", (["a", "b", "a"],))
    assert delta() == ({("get_many", "error"): 2} if got[0] == "raised" else {})


@pytest.mark.parametrize("op,args", [(op, args) for op, args, _ in SCRIPT])
def test_django_redis_ignored_failures_are_errors(op, args):
    ours, bare = make("redis_dead_ignored"), caches["redis_dead_ignored_bare"]
    try:
        delta = OpDelta("redis_dead_ignored", "redis")
        assert _run(ours, op, args) == _run(bare, op, args)
        assert delta() == {(op, "error"): len(set(args[0])) if op == "get_many" else 1}
    finally:
        ours.close()


def test_alias_is_the_caches_key_and_series_are_per_alias():
    default, locmem = make("default"), make("locmem")
    d_default, d_locmem = OpDelta("default", "locmem"), OpDelta("locmem", "locmem")
    default.get("x")
    locmem.get("x")
    locmem.get("y")
    assert d_default() == {("get", "miss"): 1}
    assert d_locmem() == {("get", "miss"): 2}


def test_a_backend_made_by_hand_is_unnamed():
    from django_prometheus.cache.backends.locmem import LocMemCache

    with ON:
        cache = LocMemCache("by-hand", {})
    delta = OpDelta("<unnamed>", "locmem")
    cache.get("x")
    assert delta() == {("get", "miss"): 1}


def test_a_users_get_override_runs_and_is_counted_once(trio):
    name, on, _, _ = trio
    from django.conf import settings

    class Upper(type(on)):
        def get(self, key, default=None, version=None, **kwargs):
            value = super().get(key, default, version, **kwargs)
            return value.upper() if isinstance(value, str) else value

    params = {k: v for k, v in settings.CACHES[name].items() if k not in ("BACKEND", "LOCATION")}
    with ON:
        cache = Upper(settings.CACHES[name]["LOCATION"], params)
    try:
        cache.set("k", "abc")
        delta, upstream = OpDelta("<unnamed>", LABELS[name]), Delta(LABELS[name])
        assert cache.get("k") == "ABC"
        # (BaseCache.get_many goes through the override; native ones do not)
        assert cache.get_many(["k"]) in ({"k": "ABC"}, {"k": "abc"})
        assert delta() == {("get", "hit"): 1, ("get_many", "hit"): 1}
        assert upstream()[0] == 2
    finally:
        cache.clear()
        cache.close()


def test_async_twins_leave_the_backend_class_alone(trio):
    # asgiref marks what it wraps as a coroutine function, following ``__func__``:
    # the recorders must never lead it to the class' own methods.
    import inspect

    name, on, _, _ = trio
    asyncio.run(on.aget_many(["a"]))
    asyncio.run(on.ahas_key("a"))
    asyncio.run(on.aget_or_set("a", 1))
    for op in ("get", "get_many", "has_key", "incr", "set_many", "delete_many"):
        assert not inspect.iscoroutinefunction(getattr(type(on), op)), op


def test_off_the_families_are_not_exposed_and_get_is_the_plain_recorder():
    result = run_isolated(
        """
        import django
        django.setup()
        from django.core.cache import caches
        from prometheus_client import generate_latest
        cache = caches["locmem"]
        cache.set("k", 1)
        cache.get("k")
        text = generate_latest().decode()
        print("django_cache_operations" in text, 'django_cache_get_hits_total{backend="locmem"} 1.0' in text)
        print(type(cache).set is cache.set.__func__, "set" in vars(cache))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "False"]


def test_on_the_families_are_exposed_with_the_namespace():
    code = textwrap.dedent(
        """
        from django.conf import settings
        settings.configure(
            PROMETHEUS_METRIC_NAMESPACE="shop",
            PROMETHEUS_CACHE_OPERATION_METRICS=True,
            CACHES={"main": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}},
        )
        import django
        django.setup()
        from django.core.cache import caches
        from prometheus_client import generate_latest
        caches["main"].get("x")
        print(generate_latest().decode())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    labels = 'alias="main",backend="locmem",operation="get"'
    assert f'shop_django_cache_operations_total{{{labels},result="miss"}} 1.0' in out
    assert f"shop_django_cache_operation_duration_seconds_count{{{labels}}} 1.0" in out
    assert 'shop_django_cache_get_misses_total{backend="locmem"} 1.0' in out


def test_multiprocess_mode_writes_the_operation_families_where_prometheus_client_reads(tmp_path):
    code = textwrap.dedent(
        """
        import os, sys
        from django.conf import settings
        settings.configure(
            PROMETHEUS_CACHE_OPERATION_METRICS=True,
            CACHES={"main": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}},
        )
        import django
        django.setup()
        from django.core.cache import caches
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
        caches["main"].set("k", 1)
        caches["main"].get("k")
        caches["main"].get("x")
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, os.environ["PROMETHEUS_MULTIPROC_DIR"])
        print(generate_latest(registry).decode())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in (
        'django_cache_operations_total{alias="main",backend="locmem",operation="get",result="hit"} 1.0',
        'django_cache_operations_total{alias="main",backend="locmem",operation="get",result="miss"} 1.0',
        'django_cache_operations_total{alias="main",backend="locmem",operation="set",result="ok"} 1.0',
        'django_cache_operation_duration_seconds_count{alias="main",backend="locmem",operation="get"} 2.0',
        'django_cache_get_total{backend="locmem"} 2.0',
    ):
        assert line in out, line


def test_an_alias_shows_series_only_for_the_operations_it_performs():
    lonely = {"lonely": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=lonely, PROMETHEUS_CACHE_OPERATION_METRICS=True):
        cache = CacheHandler()["lonely"]
    cache.set("k", 1)
    # get's series exist from the start, the others' from their first call
    assert {op for op, _ in op_counts("lonely", "locmem")} == {"get", "set"}
