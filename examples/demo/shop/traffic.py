"""DEMO_TRAFFIC=1: a bounded loop of requests to the demo's own pages, so /metrics moves.

Every request carries `X-Request-Start` as nginx sets it (the queue-time histogram); one per
round carries a W3C `traceparent` (an exemplar, when OpenTelemetry's SDK is installed).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


def _call(base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(
        base + path, method=method, data=b"name=widget" if method == "POST" else None
    )
    # As nginx's `proxy_set_header X-Request-Start "t=${msec}";` (seconds, millisecond resolution).
    req.add_header("X-Request-Start", f"t={time.time():.3f}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:  # 4xx/5xx are part of the show
        return exc.code


def one_round(base: str, i: int, rng: random.Random) -> None:
    """One round: a cached page, two list reads, an insert, an update; failures on a schedule."""
    _call(base, "/")
    _call(base, "/items/?format=json")
    _call(base, "/items/?format=json")
    _call(base, "/orders/n-plus-one")
    _call(base, "/orders/select-related")
    # A request that is part of a trace (version 00, a trace id, a parent span id, sampled).
    trace_id, parent = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
    _call(base, "/items/?format=json", headers={"traceparent": f"00-{trace_id:032x}-{parent:016x}-01"})
    if _call(base, "/items/new", "POST") == 201:
        # The newest items; touch one, sometimes delete one.
        with urllib.request.urlopen(base + "/items/?format=json", timeout=5) as resp:
            items = json.loads(resp.read())["items"]
        if items:
            _call(base, f"/items/{rng.choice(items)['id']}/touch", "POST")
            if len(items) > 3:
                _call(base, f"/items/{items[0]['id']}/delete", "POST")
    # Deterministic, so that any 5 rounds show every kind of failure at least once.
    if i % 5 == 0:
        _call(base, "/boom")
    if i % 5 == 1:
        _call(base, "/db-error")
    if i % 5 == 2:
        _call(base, "/no-such-page")


def drive(base: str, rounds: int, pause: float) -> None:
    """`rounds` rounds, `pause` seconds apart, then stop: the loop is bounded in count and time."""
    rng = random.Random(42)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait for the server to accept connections
        try:
            _call(base, "/metrics")
            break
        except OSError:
            time.sleep(0.1)
    for i in range(rounds):
        try:
            one_round(base, i, rng)
        except OSError as exc:
            log.warning("demo traffic: %s", exc)
        if i + 1 < rounds:
            time.sleep(pause)
    print(f"demo traffic: done ({rounds} rounds)", flush=True)


def start(base: str, rounds: int, pause: float) -> threading.Thread:
    t = threading.Thread(target=drive, args=(base, rounds, pause), name="demo-traffic", daemon=True)
    t.start()
    return t
