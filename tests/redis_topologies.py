"""Real Redis topologies on loopback for the tests: primary/replicas, Sentinel, Cluster.

Every server is Debian's ``redis-server`` in the foreground, on ports picked free at
run time (a port lost to a race is picked again), with its log and config in a
temporary directory. Readiness is polled, with generous bounded timeouts (the test
machine is loaded); everything started is stopped when the block ends, failure or not.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from django_redis.pool import ConnectionFactory
from redis.cluster import RedisCluster

from tests.servers import free_port

STARTUP_SECONDS = 60
#: Sentinel's down-after-milliseconds: a dead primary is noticed this fast.
DOWN_AFTER_MS = 1000
SERVICE = "dpmaster"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Servers must not outlive a test run killed hard (PR_SET_PDEATHSIG = 1).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def wait_until(check: Callable[[], object], what: str, seconds: float = STARTUP_SECONDS) -> object:
    """Poll ``check`` until it returns something truthy (errors count as not yet); that value."""
    deadline = time.monotonic() + seconds
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (redis.RedisError, OSError) as exc:
            last = exc
        else:
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds}s (last error: {last!r})")


@dataclass
class Server:
    """One ``redis-server`` process."""

    port: int
    proc: subprocess.Popen
    log: Path
    extra_ports: tuple[int, ...] = ()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"


def _ping(port: int) -> bool:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2) as c:
        return bool(c.ping())


def start_server(
    directory: Path,
    name: str,
    args: Callable[[int, tuple[int, ...]], list[str]],
    extra: int = 0,
    port: int | None = None,
) -> Server:
    """``redis-server`` with ``args(port, extra_ports)`` (a config file first, if any), answering PING.

    On ``port`` if given, else on one picked free (again if another process takes it first).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(1 if port else 3):
        port = port or free_port()
        extra_ports = tuple(free_port() for _ in range(extra))
        log = directory / f"{name}-{port}.log"
        with log.open("ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                ["redis-server", *args(port, extra_ports)],
                cwd=directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        server = Server(port, proc, log, extra_ports)
        deadline = time.monotonic() + STARTUP_SECONDS
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if _ping(port):
                    return server
            except (redis.RedisError, OSError):
                time.sleep(0.1)
        server.stop(signal.SIGKILL)
        if "Address already in use" not in server.tail():
            raise AssertionError(f"{name} on {port} did not answer PING:\n{server.tail()}")
        port = None
    raise AssertionError(f"{name}: its port was taken, every attempt")


def _common(directory: Path, port: int) -> list[str]:
    # no 5 s wait for more replicas before a full sync (Redis' default): replicas join at once
    return ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--daemonize", "no", "--repl-diskless-sync-delay", "0"]  # fmt: skip


def start_data_node(
    directory: Path, name: str, primary: Server | None = None, port: int | None = None
) -> Server:
    """A primary, or a replica of ``primary`` once its link is up and in sync."""
    replica_of = ["--replicaof", "127.0.0.1", str(primary.port)] if primary else []
    server = start_server(
        directory / name, name, lambda p, _: [*_common(directory / name, p), *replica_of], port=port
    )
    if primary is not None:
        try:
            wait_replica_synced(server)
        except BaseException:
            server.stop()
            raise
    return server


def wait_replica_synced(server: Server) -> None:
    def synced() -> bool:
        with server.client() as c:
            info = c.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    wait_until(synced, f"replica {server.address} in sync")


@dataclass
class SentinelTopology:
    """A primary, a replica and three sentinels (quorum 2) watching service ``SERVICE``."""

    directory: Path
    data: list[Server]
    sentinels: list[Server]
    service: str = SERVICE

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def primary_port(self) -> int:
        """The primary's port as the first sentinel reports it."""
        with self.sentinels[0].client(decode_responses=True) as c:
            return int(c.sentinel_get_master_addr_by_name(self.service)[1])

    def node(self, port: int) -> Server:
        return next(s for s in self.data if s.port == port)

    def revive(self) -> None:
        """Start killed data nodes again on their ports, as replicas of the current primary."""
        for dead in [s for s in self.data if not s.alive()]:
            primary = self.node(self.primary_port())
            self.data[self.data.index(dead)] = start_data_node(
                self.directory, f"revived-{dead.port}", primary, port=dead.port
            )

    def wait_healthy(self) -> None:
        """Every sentinel agrees on a live primary and knows a synced replica and the other sentinels."""

        def healthy() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                with sentinel.client(decode_responses=True) as c:
                    master = c.sentinel_master(self.service)
                    replicas = c.sentinel_slaves(self.service)
                    others = c.sentinel_sentinels(self.service)
                if (
                    "s_down" in master["flags"]
                    or "o_down" in master["flags"]
                    or "failover" in master["flags"]
                ):
                    return False
                if len(others) != len(self.sentinels) - 1:
                    return False
                if not any(r["flags"] == "slave" and r["master-link-status"] == "ok" for r in replicas):
                    return False
                ports.add(int(master["port"]))
            if len(ports) != 1:
                return False
            (port,) = ports
            with self.node(port).client() as c:
                info = c.info("replication")
            return info["role"] == "master" and info["connected_slaves"] >= 1

        wait_until(healthy, "sentinel topology healthy")

    def wait_failed_over(self, old_port: int) -> int:
        """The new primary's port, once all sentinels report it and ``old_port`` is its replica (or dead)."""

        def moved() -> int | None:
            ports = set()
            for sentinel in self.sentinels:
                with sentinel.client(decode_responses=True) as c:
                    ports.add(int(c.sentinel_get_master_addr_by_name(self.service)[1]))
            if len(ports) != 1 or old_port in ports:
                return None
            (port,) = ports
            with self.node(port).client() as c:
                if c.info("replication")["role"] != "master":
                    return None
            old = self.node(old_port)
            if old.alive():  # demoted: until then it still takes writes, lost when it resyncs
                with old.client() as c:
                    info = c.info("replication")
                if (
                    info["role"] != "slave"
                    or info.get("master_port") != port
                    or info["master_link_status"] != "up"
                ):
                    return None
            return port

        return int(wait_until(moved, f"failover away from {old_port}"))  # type: ignore[arg-type]


def _sentinel_args(directory: Path, primary: Server) -> Callable[[int, tuple[int, ...]], list[str]]:
    def args(port: int, _extra: tuple[int, ...]) -> list[str]:
        conf = directory / f"sentinel-{port}.conf"  # sentinel rewrites its own config file
        conf.write_text(
            f"bind 127.0.0.1\nport {port}\ndaemonize no\ndir {directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return [str(conf), "--sentinel"]

    return args


@contextmanager
def sentinel_topology(directory: Path) -> Iterator[SentinelTopology]:
    with ExitStack() as stack:
        servers: list[Server] = []
        stack.callback(lambda: [s.stop() for s in reversed(servers)])
        primary = start_data_node(directory, "a")
        servers.append(primary)
        servers.append(start_data_node(directory, "b", primary))
        sentinels = []
        for i in range(3):
            sentinel = start_server(
                directory / f"s{i}", "sentinel", _sentinel_args(directory / f"s{i}", primary)
            )
            servers.append(sentinel)
            sentinels.append(sentinel)
        topology = SentinelTopology(directory, servers[:2], sentinels)
        topology.wait_healthy()
        yield topology


@dataclass
class Cluster:
    """Redis Cluster nodes (primaries only), every hash slot assigned."""

    nodes: list[Server]


def _cluster_args(directory: Path) -> Callable[[int, tuple[int, ...]], list[str]]:
    def args(port: int, extra: tuple[int, ...]) -> list[str]:
        # the cluster bus on a port of its own, also picked free (not Redis' default port + 10000)
        conf = str(directory / "nodes.conf")
        return [*_common(directory, port), "--cluster-enabled", "yes", "--cluster-port", str(extra[0]),
                "--cluster-config-file", conf, "--cluster-node-timeout", "5000"]  # fmt: skip

    return args


@contextmanager
def redis_cluster(directory: Path, size: int = 3) -> Iterator[Cluster]:
    with ExitStack() as stack:
        nodes: list[Server] = []
        stack.callback(lambda: [n.stop() for n in reversed(nodes)])
        for i in range(size):
            here = directory / f"c{i}"
            nodes.append(start_server(here, "cluster-node", _cluster_args(here), extra=1))
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *(n.address for n in nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=STARTUP_SECONDS,
        )  # fmt: skip
        if create.returncode:
            raise AssertionError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")

        def ok() -> bool:
            for node in nodes:
                with node.client(decode_responses=True) as c:
                    info = dict(
                        line.split(":", 1)
                        for line in c.execute_command("CLUSTER", "INFO").splitlines()
                        if ":" in line
                    )
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != size:
                    return False
            return True

        wait_until(ok, "cluster state ok on every node")
        yield Cluster(nodes)


class ClusterConnectionFactory(ConnectionFactory):
    """django-redis' connection factory for Redis Cluster: redis-py's ``RedisCluster`` from ``LOCATION``.

    The caches page's recipe (django-redis ships none): ``OPTIONS["CONNECTION_FACTORY"]``.
    """

    def get_connection(self, params: dict) -> RedisCluster:
        kwargs = dict(params)
        return RedisCluster.from_url(kwargs.pop("url"), **kwargs)

    def disconnect(self, connection: RedisCluster) -> None:
        connection.close()


def replicated(primary: Server, replicas: list[Server]) -> None:
    """Wait until ``replicas`` have everything ``primary`` had written when this was called."""
    with primary.client() as c:
        offset = c.info("replication")["master_repl_offset"]
    for replica in replicas:

        def caught_up(replica: Server = replica) -> bool:
            with replica.client() as c:
                return c.info("replication").get("slave_repl_offset", -1) >= offset

        wait_until(caught_up, f"replica {replica.address} at offset {offset}")


def command_calls(server: Server, *commands: str) -> int:
    """How many times ``server`` ran ``commands`` since it started."""
    with server.client() as c:
        stats = c.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in commands)
