"""Our Redis backends against real Sentinel, primary/replica and Cluster topologies.

Every topology is started once per module on free loopback ports (tests/redis_topologies.py)
and stopped at the end. Each test runs our backend next to the uninstrumented one on the
same servers (another key prefix) and asserts both the same outcomes and exact counters:
every get is counted once, as a hit, a miss or a failure, failovers included.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.test import override_settings
from django_redis.cache import RedisCache as BareDjangoRedisCache
from django_redis.pool import ConnectionFactory
from prometheus_client import REGISTRY
from redis.sentinel import Sentinel, SentinelConnectionPool

from django_prometheus.cache.backends.redis import NativeRedisCache, RedisCache
from tests import redis_topologies as topologies
from tests.servers import free_port

pytestmark = pytest.mark.services

SENTINEL_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.SentinelClient",
    "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
    "SOCKET_TIMEOUT": 5,
    "SOCKET_CONNECT_TIMEOUT": 5,
}
#: Consecutive clean rounds that end a failover's traffic; the bound on its rounds.
SETTLED, MAX_ROUNDS, TRAFFIC_SECONDS = 5, 3000, 120
#: What a get may raise while the primary is away: redis-py's connection errors, as without us.
FAILOVER_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
MARK, ABSENT = object(), object()  # defaults told apart: a key stored, a key never stored


def counts(label: str) -> tuple[float, float, float, float]:
    return tuple(  # type: ignore[return-value]
        REGISTRY.get_sample_value(name, {"backend": label}) or 0.0
        for name in (
            "django_cache_get_total",
            "django_cache_get_hits_total",
            "django_cache_get_misses_total",
            "django_cache_get_fail_total",
        )
    )


class Delta:
    """(gets, hits, misses, fails) of one ``backend`` label since creation."""

    def __init__(self, label: str) -> None:
        self.label, self.start = label, counts(label)

    def __call__(self) -> tuple[float, float, float, float]:
        return tuple(a - b for a, b in zip(counts(self.label), self.start, strict=True))  # type: ignore[return-value]


class Operations:
    """``django_cache_operations_total`` of hand-made django-redis backends since creation."""

    LABELS = {"alias": "<unnamed>", "backend": "redis"}
    RESULTS = (("get", "hit"), ("get", "miss"), ("get", "error"), ("set", "ok"), ("set", "error"))

    def __init__(self) -> None:
        self.start = self.counts()

    def counts(self) -> dict[tuple[str, str], float]:
        return {
            (op, result): REGISTRY.get_sample_value(
                "django_cache_operations_total", {**self.LABELS, "operation": op, "result": result}
            )
            or 0.0
            for op, result in self.RESULTS
        }

    def __call__(self) -> dict[tuple[str, str], float]:
        now = self.counts()
        return {key: now[key] - self.start[key] for key in self.RESULTS}


def outcome(call: Callable[[], Any]) -> tuple:
    try:
        return ("returned", call())
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return ("raised", type(exc), str(exc))


def close(*caches: Any) -> None:
    """Drop every connection the caches opened (django-redis' pools are process-global)."""
    for cache in caches:
        if isinstance(cache, BareDjangoRedisCache):
            client = cache.client
            for i, connection in enumerate(client._clients):
                if connection is not None:
                    client.connection_factory.disconnect(connection)
                    client._clients[i] = None
        elif "_cache" in vars(cache):  # its client, created on first use (if that worked)
            for pool in cache._cache._pools.values():
                pool.disconnect()
                manager = getattr(pool, "sentinel_manager", None)
                for sentinel in getattr(manager, "sentinels", ()):
                    sentinel.close()


@pytest.fixture(scope="module")
def django_redis_pools() -> Iterator[None]:
    """Forget (and close) the pools django-redis keeps per URL, so no other module inherits them."""
    before = set(ConnectionFactory._pools)
    yield
    for url in set(ConnectionFactory._pools) - before:
        pool = ConnectionFactory._pools.pop(url)
        pool.disconnect()
        for sentinel in getattr(getattr(pool, "sentinel_manager", None), "sentinels", ()):
            sentinel.close()


# --- Sentinel ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory, django_redis_pools) -> Iterator[topologies.SentinelTopology]:
    with topologies.sentinel_topology(tmp_path_factory.mktemp("sentinel")) as topology:
        yield topology


@pytest.fixture
def healthy(sentinel) -> topologies.SentinelTopology:
    sentinel.revive()  # after the failover test, whichever order the tests run in
    sentinel.wait_healthy()
    return sentinel


def sentinel_pair(topology, location: Any, **options: Any) -> tuple[RedisCache, BareDjangoRedisCache]:
    opts = {**SENTINEL_OPTIONS, "SENTINELS": topology.sentinel_addresses, **options}
    ours = RedisCache(location, {"OPTIONS": dict(opts), "KEY_PREFIX": "ours"})
    bare = BareDjangoRedisCache(location, {"OPTIONS": dict(opts), "KEY_PREFIX": "bare"})
    return ours, bare


def native_sentinel_pair(topology, db: int) -> tuple[NativeRedisCache, DjangoRedisCache]:
    def options() -> dict:
        manager = Sentinel(topology.sentinel_addresses, socket_timeout=5)
        return {
            "pool_class": SentinelConnectionPool,
            "service_name": topology.service,
            "sentinel_manager": manager,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        }

    location = f"redis://{topology.service}/{db}"
    ours = NativeRedisCache(location, {"OPTIONS": options(), "KEY_PREFIX": "ours"})
    bare = DjangoRedisCache(location, {"OPTIONS": options(), "KEY_PREFIX": "bare"})
    return ours, bare


VALUES = {"zero": 0, "empty": "", "none": None, "false": False, "text": "text", "list": [1, 2]}


def test_sentinel_client_counts_each_get_and_reads_from_the_replica(healthy):
    topology = healthy
    ours, bare = sentinel_pair(topology, f"redis://{topology.service}/0")
    try:
        ours.clear()  # both: clear() empties the whole database
        for cache in (ours, bare):
            cache.set_many(VALUES)
        primary = topology.node(topology.primary_port())
        replica = next(s for s in topology.data if s is not primary)
        topologies.replicated(primary, [replica])
        primary_reads = topologies.command_calls(primary, "get", "mget")
        replica_reads = topologies.command_calls(replica, "get", "mget")
        delta = Delta("redis")

        calls = [
            *(lambda c, k=k: c.get(k, MARK) for k in VALUES),
            lambda c: c.get("absent", MARK),
            lambda c: c.get_many(["zero", "none", "absent", "zero", "other"]),
            lambda c: c.has_key("text"),
        ]
        for call in calls:
            assert outcome(lambda f=call: f(ours)) == outcome(lambda f=call: f(bare))
        # get_or_set writes to the primary, so its second read waits for the replica
        assert ours.get_or_set("fresh", 7) == bare.get_or_set("fresh", 7) == 7

        # six hits, a miss; get_many: zero and none hit, absent and other miss; get_or_set: a miss
        # (django-redis' has_key asks EXISTS, not get: not counted, as upstream)
        assert delta() == (12, 8, 4, 0)
        # django-redis' SentinelClient reads from the replicas' pool: the primary served no read;
        # per backend: seven GETs, an MGET and get_or_set's two GETs
        assert topologies.command_calls(primary, "get", "mget") == primary_reads
        assert topologies.command_calls(replica, "get", "mget") - replica_reads == 2 * 10
        assert isinstance(ours.client.get_client(write=False).connection_pool, SentinelConnectionPool)
    finally:
        close(ours, bare)


def test_native_backend_with_a_sentinel_connection_pool_counts_each_get(healthy):
    topology = healthy
    ours, bare = native_sentinel_pair(topology, db=3)
    try:
        ours.clear()  # both: clear() empties the whole database
        for cache in (ours, bare):
            cache.set_many(VALUES)
        delta = Delta("native_redis")
        for key in [*VALUES, "absent"]:
            assert outcome(lambda k=key: ours.get(k, MARK)) == outcome(lambda k=key: bare.get(k, MARK))
        assert (
            ours.get_many(["zero", "absent", "zero"])
            == bare.get_many(["zero", "absent", "zero"])
            == {"zero": 0}
        )
        assert delta() == (len(VALUES) + 3, len(VALUES) + 1, 2, 0)
    finally:
        close(ours, bare)


def test_native_backend_with_a_sentinel_pool_class_alone_fails_as_without_us(sentinel):
    location = f"redis://{sentinel.service}/0"
    options = {"pool_class": "redis.sentinel.SentinelConnectionPool"}
    ours = NativeRedisCache(location, {"OPTIONS": dict(options)})
    bare = DjangoRedisCache(location, {"OPTIONS": dict(options)})
    delta = Delta("native_redis")
    ours_get, bare_get = outcome(lambda: ours.get("key")), outcome(lambda: bare.get("key"))
    assert ours_get == bare_get
    assert ours_get[:2] == ("raised", TypeError)
    assert "missing 2 required positional arguments: 'service_name' and 'sentinel_manager'" in ours_get[2]
    assert delta() == (1, 0, 0, 1)


class Traffic:
    """A bounded loop of cache calls around a failover, recording every outcome per cache."""

    def __init__(self, topology: topologies.SentinelTopology, old_primary: int) -> None:
        self.topology, self.old_primary = topology, old_primary
        self.new_primary: int | None = None
        self.log: dict[str, list[tuple]] = {}

    def primary_moved(self) -> bool:
        if self.new_primary is None:
            try:
                port = self.topology.primary_port()
            except (redis.RedisError, OSError):
                return False
            if port != self.old_primary:
                self.new_primary = port
        return self.new_primary is not None

    def run(self, round_: Callable[[int], dict[str, tuple]], failed: Callable[[tuple], bool]) -> None:
        """Call ``round_(i)`` until the primary moved and no result of the last SETTLED rounds ``failed``."""
        deadline = time.monotonic() + TRAFFIC_SECONDS
        clean = 0
        for i in range(MAX_ROUNDS):
            results = round_(i)
            for name, result in results.items():
                self.log.setdefault(name, []).append(result)
            clean = 0 if any(map(failed, results.values())) or not self.primary_moved() else clean + 1
            if clean == SETTLED:
                return
            assert time.monotonic() < deadline, f"traffic did not settle within {TRAFFIC_SECONDS}s"
            time.sleep(0.02)
        pytest.fail(f"traffic did not settle within {MAX_ROUNDS} rounds")

    def kinds(self, name: str) -> dict[str, int]:
        tally: dict[str, int] = {}
        for result in self.log[name]:
            kind = (
                "raised" if result[0] == "raised" else "default" if result[1] in (MARK, ABSENT) else "value"
            )
            tally[kind] = tally.get(kind, 0) + 1
        return tally

    def errors(self, name: str) -> set[type]:
        return {r[1] for r in self.log[name] if r[0] == "raised"}


def test_sentinel_primary_killed_during_traffic(healthy):
    """The primary dies under traffic; every get counted once until the replica is promoted and after.

    django-redis' SentinelClient reading from the replica (writes fail meanwhile) and reading
    from the primary (LOCATION names it alone: gets fail), raising and with IGNORE_EXCEPTIONS,
    and Django's own backend: ours next to the bare backend, each the same way. The next
    test using the topology restarts the killed node (as a replica of the new primary).
    """
    topology = healthy
    caches: dict[str, tuple[Any, bool, bool]] = {}  # name -> (cache, ignoring, reads from the replica)
    primary_only = [f"redis://{topology.service}/2?is_master=1"]
    for location, replica_reads in ((f"redis://{topology.service}/1", True), (primary_only, False)):
        for ignoring in (False, True) if not replica_reads else (False,):
            suffix = (" replica" if replica_reads else "") + (" ignoring" if ignoring else "")
            ours, bare = sentinel_pair(
                topology, location, **({"IGNORE_EXCEPTIONS": True} if ignoring else {})
            )
            caches[f"ours{suffix}"], caches[f"bare{suffix}"] = (
                (ours, ignoring, replica_reads),
                (bare, ignoring, replica_reads),
            )
    native, native_bare = native_sentinel_pair(topology, db=4)
    caches["native"], caches["native bare"] = (native, False, False), (native_bare, False, False)
    with override_settings(PROMETHEUS_CACHE_OPERATION_METRICS=True):
        # the opt-in families too: reads and writes to the primary, every result counted once
        caches["ours ops"] = (sentinel_pair(topology, primary_only)[0], False, False)
    try:
        for cache, _, _ in caches.values():
            cache.set("present", "value")
        old = topology.primary_port()
        topologies.replicated(topology.node(old), [s for s in topology.data if s.port != old])
        deltas = {"redis": Delta("redis"), "native_redis": Delta("native_redis")}
        operations = Operations()
        topology.node(old).stop(signal.SIGKILL)
        traffic = Traffic(topology, old)

        def round_(i: int) -> dict[str, tuple]:
            results = {}
            for name, (cache, ignoring, replica_reads) in caches.items():
                if replica_reads or name == "ours ops":
                    results[f"{name} set"] = outcome(lambda c=cache: c.set(f"k{i}", i))
                results[name] = outcome(lambda c=cache: c.get("present", MARK))
                if not ignoring:  # with IGNORE_EXCEPTIONS a failure and a miss look alike
                    results[f"{name} absent"] = outcome(lambda c=cache: c.get("absent", ABSENT))
            return results

        traffic.run(round_, failed=lambda r: r[0] == "raised" or r[1] is MARK)
        topology.wait_failed_over(old)

        kinds = {name: traffic.kinds(name) for name in traffic.log}
        print(
            kinds,
            {
                f"{r[1].__module__}.{r[1].__qualname__}": r[2]
                for rs in traffic.log.values()
                for r in rs
                if r[0] == "raised"
            },
        )
        for name in traffic.log:
            assert all(
                r[1] in (True, "value", MARK, ABSENT) for r in traffic.log[name] if r[0] == "returned"
            ), kinds
            assert all(issubclass(e, FAILOVER_ERRORS) for e in traffic.errors(name)), traffic.errors(name)
        # while the primary was away the reads from it failed (raised, or returned the default)
        # and the writes failed, then everything worked again: ours as the bare backend did
        for ours, bare, failure in (
            ("ours", "bare", "raised"),
            ("ours ignoring", "bare ignoring", "default"),
            ("native", "native bare", "raised"),
            ("ours replica set", "bare replica set", "raised"),
            ("ours ops", "bare", "raised"),
            ("ours ops set", "bare replica set", "raised"),
        ):
            for name in (ours, bare):
                assert kinds[name].get(failure, 0) >= 1 and kinds[name].get("value", 0) >= 1, kinds
            assert set(kinds[ours]) == set(kinds[bare]), kinds

        def tally(label: str) -> tuple[int, int, int, int]:
            gets = hits = misses = fails = 0
            for name, (_, ignoring, _) in caches.items():
                if not name.startswith("ours" if label == "redis" else "native") or "bare" in name:
                    continue
                for seen in (kinds[name], kinds.get(f"{name} absent", {})):
                    gets += sum(seen.values())
                    hits += seen.get("value", 0)
                    misses += 0 if ignoring else seen.get("default", 0)
                    fails += seen.get("raised", 0) + (seen.get("default", 0) if ignoring else 0)
            return gets, hits, misses, fails

        for label, delta in deltas.items():
            assert delta() == tally(label)
        reads, writes = kinds["ours ops"], kinds["ours ops set"]
        absent = kinds["ours ops absent"]
        assert operations() == {
            ("get", "hit"): reads.get("value", 0),
            ("get", "miss"): reads.get("default", 0) + absent.get("default", 0),
            ("get", "error"): reads.get("raised", 0) + absent.get("raised", 0),
            ("set", "ok"): writes.get("value", 0),
            ("set", "error"): writes.get("raised", 0),
        }
        assert caches["ours"][0].get("present") == native.get("present") == "value"
    finally:
        close(*(cache for cache, _, _ in caches.values()))


# --- Django's own backend: primary and replicas in LOCATION --------------------


@pytest.fixture(scope="module")
def replication(tmp_path_factory) -> Iterator[list[topologies.Server]]:
    directory = tmp_path_factory.mktemp("replication")
    with topologies.ExitStack() as stack:
        primary = topologies.start_data_node(directory, "primary")
        stack.callback(primary.stop)
        nodes = [primary]
        for name in ("replica1", "replica2"):
            replica = topologies.start_data_node(directory, name, primary)
            stack.callback(replica.stop)
            nodes.append(replica)
        yield nodes


def test_native_primary_replica_location_counts_each_get(replication):
    primary, *replicas = replication
    location = [server.url for server in replication]
    ours = NativeRedisCache(location, {"KEY_PREFIX": "ours"})
    bare = DjangoRedisCache(location, {"KEY_PREFIX": "bare"})
    try:
        for cache in (ours, bare):
            cache.set_many(VALUES)
        topologies.replicated(primary, replicas)
        primary_reads = topologies.command_calls(primary, "get", "mget")
        replica_reads = sum(topologies.command_calls(r, "get", "mget") for r in replicas)
        delta = Delta("native_redis")
        rounds = 20
        for _ in range(rounds):
            for key in [*VALUES, "absent"]:
                assert outcome(lambda k=key: ours.get(k, MARK)) == outcome(lambda k=key: bare.get(k, MARK))
            many = ["zero", "absent", "none", "zero"]
            assert outcome(lambda m=many: ours.get_many(m)) == outcome(lambda m=many: bare.get_many(m))
        per_round = (len(VALUES) + 1 + 3, len(VALUES) + 2, 2, 0)
        assert delta() == tuple(rounds * n for n in per_round)
        # writes went to the first LOCATION, every read to the replicas, both of them
        assert topologies.command_calls(primary, "get", "mget") == primary_reads
        assert sum(
            topologies.command_calls(r, "get", "mget") for r in replicas
        ) - replica_reads == 2 * rounds * (len(VALUES) + 2)
        assert all(topologies.command_calls(r, "get", "mget") > 0 for r in replicas)
    finally:
        close(ours, bare)


def test_native_replica_down_counts_its_reads_as_failures(replication):
    """A replica in LOCATION that does not answer: the reads Django sends it fail, counted."""
    primary, replica, _ = replication
    dead = f"redis://127.0.0.1:{free_port()}"
    location = [primary.url, replica.url, dead]
    ours = NativeRedisCache(location, {"KEY_PREFIX": "ours", "OPTIONS": {"socket_connect_timeout": 5}})
    bare = DjangoRedisCache(location, {"KEY_PREFIX": "bare", "OPTIONS": {"socket_connect_timeout": 5}})
    try:
        ours.set("present", 1)
        bare.set("present", 1)
        topologies.replicated(primary, [replica])
        delta = Delta("native_redis")
        seen = {"ours": [], "bare": []}
        for _ in range(40):  # each read picks one of the two replicas at random
            seen["ours"].append(outcome(lambda: ours.get("present", MARK)))
            seen["bare"].append(outcome(lambda: bare.get("present", MARK)))
        raised = sum(r[0] == "raised" for r in seen["ours"])
        assert 0 < raised < 40
        assert delta() == (40, 40 - raised, 0, raised)
        for name in seen:
            assert {r[:2] for r in seen[name]} == {
                ("returned", 1),
                ("raised", redis.exceptions.ConnectionError),
            }
    finally:
        close(ours, bare)


# --- Redis Cluster -------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, django_redis_pools) -> Iterator[topologies.Cluster]:
    with topologies.redis_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


CLUSTER_OPTIONS = {"CONNECTION_FACTORY": "tests.redis_topologies.ClusterConnectionFactory"}


def test_cluster_through_django_redis_connection_factory_counts_each_get(cluster):
    location = cluster.nodes[0].url
    ours = RedisCache(location, {"OPTIONS": CLUSTER_OPTIONS, "KEY_PREFIX": "ours"})
    bare = BareDjangoRedisCache(location, {"OPTIONS": CLUSTER_OPTIONS, "KEY_PREFIX": "bare"})
    try:
        keys = [f"key{i}" for i in range(30)]
        for cache in (ours, bare):
            cache.set_many({k: i for i, k in enumerate(keys)})
            cache.set_many({f"{{tag}}:{k}": v for k, v in VALUES.items()})
        for node in cluster.nodes:  # the keys are spread over every node
            with node.client() as c:
                assert c.dbsize() > 0
        delta = Delta("redis")
        for key in [*keys, "absent", *(f"{{tag}}:{k}" for k in VALUES)]:
            assert outcome(lambda k=key: ours.get(k, MARK)) == outcome(lambda k=key: bare.get(k, MARK))
        # keys sharing a hash tag live in one slot: MGET works
        tagged = ["{tag}:zero", "{tag}:none", "{tag}:absent", "{tag}:zero"]
        assert ours.get_many(tagged) == bare.get_many(tagged) == {"{tag}:zero": 0, "{tag}:none": None}
        assert ours.get_or_set("fresh", 1) == bare.get_or_set("fresh", 1) == 1
        assert ours.has_key("key3") is bare.has_key("key3") is True
        assert ours.incr("key3", 10) == bare.incr("key3", 10) == 13
        # has_key asks EXISTS and incr runs INCRBY: neither is a get
        assert delta() == (len(keys) + 1 + len(VALUES) + 3 + 1, len(keys) + len(VALUES) + 2, 3, 0)
        # multi-key writes spanning every node: redis-py splits them per slot
        assert ours.delete_many(keys) == bare.delete_many(keys)
        assert ours.get_many(["{tag}:zero", "{tag}:text"]) == {"{tag}:zero": 0, "{tag}:text": "text"}
        for node in cluster.nodes:
            with node.client() as c:
                assert not [
                    k
                    for k in c.keys("*")
                    if not k.startswith((b"ours:1:{tag}", b"bare:1:{tag}", b"ours:1:fresh", b"bare:1:fresh"))
                ]

        # keys in different slots: redis-py refuses the MGET, as without us; each key a failure
        delta = Delta("redis")
        spread = ["key1", "key2", "key3", "key1"]
        ours_many, bare_many = outcome(lambda: ours.get_many(spread)), outcome(lambda: bare.get_many(spread))
        assert ours_many == bare_many
        assert ours_many[:2] == ("raised", redis.exceptions.RedisClusterException), ours_many
        assert delta() == (3, 0, 0, 3)
    finally:
        close(ours, bare)


def _moved_key(*caches: Any) -> str:
    """A key the first node owns under no cache's prefix (its gets answer MOVED)."""
    for i in range(100):
        key = f"elsewhere{i}"
        if all(outcome(lambda k=key, c=c: c.get(k))[0] == "raised" for c in caches):
            return key
    raise AssertionError("every key on the first node")


@pytest.mark.parametrize(
    "ours_class, bare_class, options, error",
    [
        pytest.param(
            NativeRedisCache, DjangoRedisCache, {}, redis.exceptions.MovedError, id="native-node-url"
        ),
        pytest.param(
            RedisCache, BareDjangoRedisCache, {}, redis.exceptions.MovedError, id="django-redis-node-url"
        ),
        pytest.param(
            RedisCache,
            BareDjangoRedisCache,
            {"REDIS_CLIENT_CLASS": "redis.cluster.RedisCluster"},
            redis.exceptions.RedisClusterException,
            id="django-redis-client-class",
        ),
        pytest.param(
            NativeRedisCache,
            DjangoRedisCache,
            {"pool_class": "redis.cluster.ClusterConnectionPool"},
            ImportError,
            id="native-pool-class",
        ),
    ],
)
def test_cluster_configurations_that_cannot_work_fail_as_without_us(
    cluster, ours_class, bare_class, options, error
):
    location = cluster.nodes[0].url
    ours = ours_class(location, {"OPTIONS": dict(options), "KEY_PREFIX": "ours"})
    bare = bare_class(location, {"OPTIONS": dict(options), "KEY_PREFIX": "bare"})
    try:
        key = _moved_key(ours, bare)
        delta = Delta(ours.prometheus_backend)
        ours_get, bare_get = outcome(lambda: ours.get(key)), outcome(lambda: bare.get(key))
        assert ours_get[:2] == bare_get[:2] == ("raised", error), (ours_get, bare_get)
        print(f"{ours_class.__name__} {options}: {error.__module__}.{error.__qualname__}: {ours_get[2]}")
        assert delta() == (1, 0, 0, 1)
    finally:
        close(ours, bare)
