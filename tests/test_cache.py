"""Every instrumented cache backend, against real servers, next to Django's own backend.

One behaviour suite applied to all backends (as Django's own cache tests do):
each test runs the same call on our backend and on Django's uninstrumented one
(same server, another key prefix), asserts the same outcome, and asserts the
exact counter deltas.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest
from django.core.cache import caches
from prometheus_client import REGISTRY

# settings alias -> value of the ``backend`` label (CONTRACT.md)
LABELS = {
    "locmem": "locmem",
    "filebased": "filebased",
    "pymemcache": "memcached",
    "pylibmc": "memcached",
    "native_redis": "native_redis",
    "redis": "redis",
}
SERVICE = {"pymemcache": "memcached", "pylibmc": "memcached", "native_redis": "redis", "redis": "redis"}
NETWORK = list(SERVICE)

LARGE = {"rows": [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(5000)]}
VALUES = [0, "", [], False, None, b"x", 0.0, {}, "text", 12345, LARGE]


def counts(label: str) -> tuple[float, float, float, float]:
    def get(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"backend": label}) or 0.0

    return (
        get("django_cache_get_total"),
        get("django_cache_get_hits_total"),
        get("django_cache_get_misses_total"),
        get("django_cache_get_fail_total"),
    )


class Delta:
    """Counter deltas (gets, hits, misses, fails) for one backend label since creation."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = counts(label)

    def __call__(self) -> tuple[float, float, float, float]:
        return tuple(now - then for now, then in zip(counts(self.label), self.start, strict=True))  # type: ignore[return-value]


def outcome(call):
    """What a call returned or raised, comparable between two backends."""
    try:
        value = call()
    except Exception as exc:  # noqa: BLE001 - the point is to compare any outcome
        return ("raised", type(exc))
    return ("returned", type(value), value)


@pytest.fixture(params=list(LABELS))
def pair(request, require_service):
    name = request.param
    if name in SERVICE:
        require_service(SERVICE[name])
    ours, bare = caches[name], caches[f"{name}_bare"]
    ours.clear()
    bare.clear()
    yield name, ours, bare
    ours.clear()
    bare.clear()


@pytest.fixture(params=NETWORK)
def dead_pair(request):
    name = request.param
    return name, caches[f"{name}_dead"], caches[f"{name}_dead_bare"]


def test_backend_classes_are_ours_and_subclass_djangos(pair):
    name, ours, bare = pair
    assert type(ours).__module__.startswith("django_prometheus.cache.backends")
    assert isinstance(ours, type(bare))


@pytest.mark.parametrize(
    "value", VALUES, ids=lambda v: type(v).__name__ + ("-large" if v is LARGE else f"-{v!r}")
)
def test_get_returns_exactly_what_djangos_backend_returns(pair, value):
    name, ours, bare = pair
    ours.set("k", value)
    bare.set("k", value)
    delta = Delta(LABELS[name])
    got, expected = ours.get("k", "default"), bare.get("k", "default")
    assert type(got) is type(expected)
    assert got == expected == value
    # A stored falsy value or None is a hit and is returned as stored (docs/install.md, What differs, 1).
    assert delta() == (1, 1, 0, 0)


def test_miss_returns_the_callers_default(pair):
    name, ours, bare = pair
    delta = Delta(LABELS[name])
    marker = object()
    assert ours.get("absent") is None
    assert ours.get("absent", marker) is marker
    assert ours.get("absent", default=0) == 0
    assert bare.get("absent", marker) is marker
    assert delta() == (3, 0, 3, 0)


def test_version_is_respected(pair):
    name, ours, _ = pair
    ours.set("k", "v1", version=1)
    ours.set("k", "v2", version=2)
    delta = Delta(LABELS[name])
    assert ours.get("k", version=2) == "v2"
    assert ours.get("k", None, 1) == "v1"
    assert ours.get("k", "none", version=3) == "none"
    assert delta() == (3, 2, 1, 0)


def test_get_takes_the_arguments_the_backends_get_takes(pair):
    name, ours, bare = pair
    for cache in (ours, bare):
        cache.set("k", 1)
    assert ours.get(key="k", default=None, version=None) == bare.get(key="k", default=None, version=None) == 1
    extra = {"client": None} if name == "redis" else {"nonsense": 1}  # django-redis' get takes a client
    assert outcome(lambda: ours.get("k", **extra)) == outcome(lambda: bare.get("k", **extra))


def test_get_many_counts_each_requested_key_once(pair):
    name, ours, bare = pair
    for cache in (ours, bare):
        cache.set_many({"a": 1, "b": None, "c": 0})
    delta = Delta(LABELS[name])
    got = ours.get_many(["a", "b", "c", "x", "y"])
    assert got == bare.get_many(["a", "b", "c", "x", "y"]) == {"a": 1, "b": None, "c": 0}
    assert delta() == (5, 3, 2, 0)


def test_get_many_accepts_a_generator(pair):
    name, ours, bare = pair
    ours.set("a", 1)
    bare.set("a", 1)
    assert ours.get_many(k for k in ["a", "b"]) == bare.get_many(k for k in ["a", "b"]) == {"a": 1}


def test_get_or_set_counts_one_lookup(pair):
    name, ours, bare = pair
    delta = Delta(LABELS[name])
    assert ours.get_or_set("k", lambda: "computed") == bare.get_or_set("k", lambda: "computed") == "computed"
    assert delta() == (1, 0, 1, 0)
    assert ours.get_or_set("k", "other") == bare.get_or_set("k", "other") == "computed"
    assert delta() == (2, 1, 1, 0)
    assert ours.get("k") == "computed"


def test_get_or_set_keeps_a_stored_falsy_value(pair):
    name, ours, bare = pair
    ours.set("k", 0)
    bare.set("k", 0)
    assert ours.get_or_set("k", 5) == bare.get_or_set("k", 5) == 0


def test_has_key_and_incr_count_at_most_one_get_each(pair):
    name, ours, bare = pair
    for cache in (ours, bare):
        cache.set("n", 1)
    delta = Delta(LABELS[name])
    assert ours.has_key("n") is bare.has_key("n") is True
    assert ours.has_key("nope") is bare.has_key("nope") is False
    assert ours.incr("n") == bare.incr("n") == 2
    gets, hits, misses, fails = delta()
    assert gets <= 3 and gets == hits + misses and fails == 0


def test_async_api_counts_once_per_lookup(pair):
    name, ours, bare = pair

    async def scenario(cache):
        await cache.aset("k", 0)
        return (
            await cache.aget("k"),
            await cache.aget("absent", "d"),
            await cache.aget_or_set("new", "made"),
            await cache.aget_or_set("new", "other"),
        )

    delta = Delta(LABELS[name])
    assert asyncio.run(scenario(ours)) == asyncio.run(scenario(bare)) == (0, "d", "made", "made")
    assert delta() == (4, 2, 2, 0)


def test_failing_network_get_behaves_like_django_and_counts_a_failure(dead_pair):
    name, ours, bare = dead_pair
    delta = Delta(LABELS[name])
    ours_outcome, bare_outcome = outcome(lambda: ours.get("k", "d")), outcome(lambda: bare.get("k", "d"))
    assert ours_outcome == bare_outcome
    # docs/install.md, What differs, 2: every backend counts the failure, not only the Redis ones.
    assert delta() == (1, 0, 0, 1)


def test_failing_network_get_many_counts_each_key_as_a_failure(dead_pair):
    name, ours, bare = dead_pair
    delta = Delta(LABELS[name])
    ours_outcome = outcome(lambda: ours.get_many(["a", "b"]))
    assert ours_outcome == outcome(lambda: bare.get_many(["a", "b"]))
    if ours_outcome[0] == "raised":
        assert delta() == (2, 0, 0, 2)


def test_django_redis_ignore_exceptions_returns_default_and_counts_failures():
    ours, bare = caches["redis_dead_ignored"], caches["redis_dead_ignored_bare"]
    delta = Delta("redis")
    assert ours.get("k", "d") == bare.get("k", "d") == "d"
    assert ours.get_many(["a", "b"]) == bare.get_many(["a", "b"]) == {}
    assert ours.get_or_set("k", "v") == bare.get_or_set("k", "v")
    assert delta() == (4, 0, 0, 4)


def corrupt(cache, key):
    """Make the stored value unreadable, the way a real backend's data can be."""
    made = cache.make_and_validate_key(key)
    if hasattr(cache, "_cache") and isinstance(cache._cache, dict):  # LocMemCache
        cache._cache[made] = b"not a pickle"
    else:  # FileBasedCache
        with open(cache._key_to_file(key), "wb") as f:
            f.write(b"not a pickle")


@pytest.mark.parametrize("name", ["locmem", "filebased"])
def test_failing_local_get_reraises_djangos_exception_and_counts_a_failure(name):
    ours, bare = caches[name], caches[f"{name}_bare"]
    for cache in (ours, bare):
        cache.set("k", "v")
        corrupt(cache, "k")
    delta = Delta(LABELS[name])
    ours_outcome = outcome(lambda: ours.get("k"))
    assert ours_outcome == outcome(lambda: bare.get("k"))
    assert ours_outcome[0] == "raised" and issubclass(ours_outcome[1], pickle.UnpicklingError)
    assert delta() == (1, 0, 0, 1)


def test_threads_lose_no_counts():
    cache = caches["locmem"]
    cache.set("hit", 1)
    delta = Delta("locmem")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # many thread switches, to give lost updates every chance

    def worker():
        get = cache.get
        for i in range(100_000):
            get("hit" if i % 2 else "miss")

    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert delta() == (800_000, 400_000, 400_000, 0)


def test_a_users_subclass_overriding_get_is_wrapped():
    from django_prometheus.cache.backends.locmem import LocMemCache

    class Upper(LocMemCache):
        def get(self, key, default=None, version=None):
            value = super().get(key, default, version)
            return value.upper() if isinstance(value, str) else value

    cache = Upper("upper-test", {})
    cache.set("k", "abc")
    delta = Delta("locmem")
    assert cache.get("k") == "ABC"
    assert cache.get("absent", "d") == "d"
    assert delta() == (2, 1, 1, 0)


def _subclass_overriding_get(name):
    """A subclass of our backend ``name`` whose ``get()`` upper-cases strings, made as Django makes it."""
    from django.conf import settings

    base = type(caches[name])
    calls = []

    class Upper(base):
        def get(self, key, default=None, version=None, **kwargs):
            calls.append(key)
            value = super().get(key, default, version, **kwargs)
            return value.upper() if isinstance(value, str) else value

    params = dict(settings.CACHES[name])
    del params["BACKEND"]
    location = params.pop("LOCATION")
    return Upper(location, {**params, "KEY_PREFIX": f"{name}_upper"}), calls


@pytest.mark.parametrize("name", list(LABELS))
def test_a_users_get_override_runs_and_is_counted_once_on_every_backend(name, require_service):
    if name in SERVICE:
        require_service(SERVICE[name])
    cache, calls = _subclass_overriding_get(name)
    try:
        cache.clear()
        cache.set("k", "abc")
        delta = Delta(LABELS[name])
        assert cache.get("k") == "ABC"
        assert cache.get("absent", "d") == "d"
        assert cache.get_or_set("k", "other") == "ABC"
        assert calls == ["k", "absent", "k"]
        assert delta() == (3, 2, 1, 0)
        cache.clear()
    finally:
        cache.close()


def test_a_users_get_override_on_django_redis_counts_an_ignored_failure():
    cache, calls = _subclass_overriding_get("redis_dead_ignored")
    delta = Delta("redis")
    assert cache.get("k", "d") == "d"
    assert calls == ["k"]
    assert delta() == (1, 0, 0, 1)


def run_isolated(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )


def test_native_redis_works_without_django_redis_installed(require_service):
    require_service("redis")
    result = run_isolated(
        """
        import sys
        sys.modules["django_redis"] = None  # as if django-redis were not installed
        import django
        django.setup()
        from django.core.cache import caches
        from prometheus_client import REGISTRY
        cache = caches["native_redis"]
        cache.set("solo", 0)
        print(cache.get("solo"), cache.get("nothing", "d"))
        print(REGISTRY.get_sample_value("django_cache_get_hits_total", {"backend": "native_redis"}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "d", "1.0"]


def test_django_memcached_consul_backend_names_the_missing_package():
    result = run_isolated(
        """
        import django
        django.setup()
        import django_prometheus.cache.backends.django_memcached_consul
        """
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "django-memcached-consul" in result.stderr


def test_namespace_setting_prefixes_the_cache_families():
    result = run_isolated(
        """
        from django.conf import settings
        settings.configure(
            PROMETHEUS_METRIC_NAMESPACE="shop",
            CACHES={"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}},
        )
        import django
        django.setup()
        from django.core.cache import cache
        from prometheus_client import generate_latest
        cache.get("x")
        print(generate_latest().decode())
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'shop_django_cache_get_total{backend="locmem"} 1.0' in result.stdout
    assert 'shop_django_cache_get_misses_total{backend="locmem"} 1.0' in result.stdout
    assert "\ndjango_cache_get_total" not in result.stdout
