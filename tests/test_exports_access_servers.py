"""The port exporters and the view decide alike on the same hostile requests, through real servers.

WSGI and ASGI servers join repeated header lines with commas before Django sees
them (RFC 9110 §5.3); a port exporter that read only the first
``X-Forwarded-For`` or ``Authorization`` line let a client behind a trusted
proxy that appends its own line (HAProxy's ``option forwardfor``) choose its
address. Each request below is sent byte for byte to the view (gunicorn, and
uvicorn with its proxy headers off so Django decides alone) and to a port
exporter (single port and range): same status, and no metric byte on refusal.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.test_exports_servers import (
    HOST,
    assert_no_metric_bytes,
    free_ports,
    gunicorn,
    needs_gunicorn,
    needs_uvicorn,
    serve,
    uvicorn,
)

METRIC = b"django_http_requests_before_middlewares_total"
# The test is the trusted proxy at 127.0.0.1; the allowed clients are 10.0.0.0/8.
BEHIND_PROXY = {
    "PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/8"],
    "PROMETHEUS_METRICS_TRUSTED_PROXIES": ["127.0.0.1"],
}
TOKEN = {"PROMETHEUS_METRICS_BEARER_TOKENS": ["s3cret"]}


def raw(port: int, header_lines: list[bytes], host: str = HOST) -> tuple[int, bytes]:
    """(status, body) of ``GET /metrics`` sent with exactly these header lines (HTTP/1.1, then closed)."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(
        line + b"\r\n" for line in header_lines
    )
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(request + b"\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():  # uvicorn's answers without Content-Length
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return status, body


def xff(*values: bytes) -> list[bytes]:
    return [b"X-Forwarded-For: " + v for v in values]


# (header lines, expected status): the proxy (this test) forwards what the client sent and,
# as HAProxy's option forwardfor and nginx's $proxy_add_x_forwarded_for do, its own line last.
ADDRESS_CASES: list[tuple[list[bytes], int]] = [
    (xff(b"10.1.2.3"), 200),
    (xff(b"10.1.2.3", b"192.0.2.1"), 403),  # the bypass: a client's own line first, the proxy's last
    (xff(b"192.0.2.1", b"10.1.2.3"), 200),
    (xff(b"10.1.2.3, 10.9.9.9", b"192.0.2.1"), 403),
    (xff(b"10.1.2.3", b""), 403),  # an empty last hop: no address, allowed nowhere
    (xff(b"", b"10.1.2.3"), 200),
    (xff(b"10.1.2.3", b"garbage"), 403),
    ([b"X-Forwarded-For:10.1.2.3", b"x-forwarded-for:    192.0.2.1   "], 403),  # odd spacing, any case
    ([b"X-FORWARDED-FOR:\t192.0.2.1 ,\t10.1.2.3\t"], 200),
    (xff(b"10.1.2.3,,192.0.2.1"), 403),
    (xff(b"::1"), 403),
    (xff(b"10.1.2.3", b"::1"), 403),
    (xff(b"2001:db8::1", b"10.1.2.3"), 200),
    (xff(b"::ffff:10.1.2.3"), 200),  # IPv4-mapped: the IPv4 address it maps
    (xff(b"10.1.2.3", b"::ffff:192.0.2.1"), 403),
    (xff(b"[::1]:8080"), 403),
    (xff(b"10.1.2.3:1234"), 403),  # a port is not an address
    (xff(b"127.0.0.1, 10.1.2.3", b"127.0.0.1"), 200),  # trusted hops are skipped right to left
    (xff(b"10.1.2.3", b"127.0.0.1", b"192.0.2.1"), 403),
    ([], 403),  # the proxy itself is not in 10.0.0.0/8
]

AUTH_CASES: list[tuple[list[bytes], int]] = [
    ([b"Authorization: Bearer s3cret"], 200),
    ([b"Authorization: Bearer s3cret", b"Authorization: Bearer wrong"], 401),  # the first line alone passed
    ([b"Authorization: Bearer wrong", b"Authorization: Bearer s3cret"], 401),
    ([b"Authorization: Bearer s3cret", b"Authorization: Bearer s3cret"], 401),
    ([b"Authorization: Bearer s3cret", b"Authorization:"], 401),
    ([b"Authorization:", b"Authorization: Bearer s3cret"], 401),
    ([b"Authorization:    Bearer s3cret   "], 200),
    ([b"authorization: bearer s3cret"], 200),
    ([b"Authorization: Bearer   s3cret"], 200),
    ([b"Authorization: Bearer s3cret,"], 401),
    ([b"Authorization: Bearer s3cret", b"X-Forwarded-For: 10.1.2.3"], 200),
    ([], 401),
]


def decide(port: int, cases: list[tuple[list[bytes], int]]) -> list[tuple[list[bytes], int]]:
    """What ``port`` answers to each case; no metric byte on a refusal."""
    answers = []
    for lines, _expected in cases:
        status, body = raw(port, lines)
        if status == 200:
            assert METRIC in body, (lines, body[:200])
        else:
            assert_no_metric_bytes(status, status, body)
        answers.append((lines, status))
    return answers


def _until_loaded(port: int, cases: list[tuple[list[bytes], int]]) -> None:
    """Wait until the process behind an export port has loaded the middlewares.

    The port starts in ``ready()``; the HTTP families are registered when the server's worker
    builds its WSGI/ASGI handler, a moment later. A scrape in between is a correct answer
    without them, which ``decide`` would take for a wrong one.
    """
    allowed = next(lines for lines, status in cases if status == 200)
    deadline = time.monotonic() + 60
    while True:
        status, body = raw(port, allowed)
        if status == 200 and METRIC in body:
            return
        assert time.monotonic() < deadline, (status, body[:200])
        time.sleep(0.1)


def assert_alike(tmp_path: Any, server: Any, rules: dict, cases: list[tuple[list[bytes], int]]) -> None:
    port, export, *port_range = free_ports(4)
    env = {"EXPORTS_SETTINGS": json.dumps(rules)}
    expected = [(lines, status) for lines, status in cases]
    with serve(server(port), [port, export], tmp_path, EXPORTS_PORT=str(export), **env):
        assert decide(port, cases) == expected  # the view, as Django sees the joined lines
        _until_loaded(export, cases)
        assert decide(export, cases) == expected
    env["EXPORTS_PORT_RANGE"] = f"{port_range[0]}-{port_range[1]}"
    with serve(server(port), [port, port_range[0]], tmp_path, **env):
        _until_loaded(port_range[0], cases)
        assert decide(port_range[0], cases) == expected


def uvicorn_without_proxy_headers(port: int) -> list[str]:
    return [*uvicorn(port), "--no-proxy-headers"]


SERVERS = [
    pytest.param(gunicorn, marks=needs_gunicorn, id="gunicorn"),
    pytest.param(uvicorn_without_proxy_headers, marks=needs_uvicorn, id="uvicorn"),
]


@pytest.mark.parametrize("server", SERVERS)
def test_repeated_forwarded_for_lines_are_read_as_the_view_reads_them(tmp_path, server):
    assert_alike(tmp_path, server, BEHIND_PROXY, ADDRESS_CASES)


@pytest.mark.parametrize("server", SERVERS)
def test_repeated_authorization_lines_are_read_as_the_view_reads_them(tmp_path, server):
    assert_alike(tmp_path, server, TOKEN, AUTH_CASES)


# An obsolete line folding (RFC 9112 §5.2): a server rejects it (gunicorn: 400) or reads it
# unfolded, with a space (uvicorn's h11); the port refuses it, as gunicorn does.
# (lines, rules, the status of the unfolded request)
FOLDED = [
    ([b"X-Forwarded-For: 192.0.2.1,", b" 10.1.2.3"], BEHIND_PROXY, 200),
    ([b"X-Forwarded-For: 10.1.2.3", b"\t192.0.2.1"], BEHIND_PROXY, 403),
    ([b"Authorization: Bearer", b" s3cret"], TOKEN, 200),
]


@pytest.mark.parametrize("server", SERVERS)
def test_folded_header_lines_are_refused_by_the_port(tmp_path, server):
    for lines, rules, unfolded in FOLDED:
        port, export = free_ports(2)
        env = {"EXPORTS_SETTINGS": json.dumps(rules), "EXPORTS_PORT": str(export)}
        with serve(server(port), [port, export], tmp_path, **env):
            status, body = raw(export, lines)
            assert_no_metric_bytes(status, 400, body)
            status, body = raw(port, lines)
            assert status in (400, unfolded), (lines, status)
            if status != 200:
                assert_no_metric_bytes(status, status, body)


def wait_listening_at(host: str, port: int) -> None:
    for _ in range(600):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on [{host}]:{port}")


# (server's and port's address, the client connects to, allow-list, status): a dual-stack
# socket (bound to the IPv4-mapped loopback) sees an IPv4 client as ::ffff:127.0.0.1.
MAPPED_CASES = [
    ("::ffff:127.0.0.1", "127.0.0.1", ["::ffff:127.0.0.1"], 200),
    ("::ffff:127.0.0.1", "127.0.0.1", ["127.0.0.1"], 200),
    ("::ffff:127.0.0.1", "127.0.0.1", ["::ffff:127.0.0.0/104"], 200),
    ("::ffff:127.0.0.1", "127.0.0.1", ["::1"], 403),
    ("127.0.0.1", "127.0.0.1", ["::ffff:127.0.0.1"], 200),
    ("::1", "::1", ["::1"], 200),
    ("::1", "::1", ["::ffff:127.0.0.1", "127.0.0.1"], 403),
]


@pytest.mark.parametrize(("server", "option"), [
    pytest.param(gunicorn, "-b", marks=needs_gunicorn, id="gunicorn"),
    pytest.param(uvicorn_without_proxy_headers, "--host", marks=needs_uvicorn, id="uvicorn"),
])  # fmt: skip
def test_ipv4_mapped_and_ipv6_clients_meet_the_allow_list_they_are_in(tmp_path, server, option):
    for bound, client, allowed, expected in MAPPED_CASES:
        port, export = free_ports(2)
        rules = {"PROMETHEUS_METRICS_ALLOWED_IPS": allowed, "PROMETHEUS_METRICS_EXPORT_ADDRESS": bound}
        args = server(port)
        at = args.index(option)
        # uvicorn cannot bind the IPv4-mapped address (EINVAL): its view listens on plain IPv4
        # then, and sees the same client as 127.0.0.1 (the port exporter is still mapped).
        args[at + 1] = f"[{bound}]:{port}" if option == "-b" else bound.removeprefix("::ffff:")
        env = {"EXPORTS_SETTINGS": json.dumps(rules), "EXPORTS_PORT": str(export)}
        with serve(args, [], tmp_path, **env):
            for target in (port, export):
                wait_listening_at(client, target)
                status, body = raw(target, [], host=client)
                assert status == expected, (bound, client, allowed, target == export, status)
                if status != 200:
                    assert_no_metric_bytes(status, status, body)


@needs_uvicorn
def test_uvicorn_default_proxy_headers_let_a_local_client_choose_its_address(tmp_path):
    """What docs/security.md warns of: uvicorn trusts X-Forwarded-For from 127.0.0.1 by default.

    ``--proxy-headers`` is on and ``--forwarded-allow-ips`` is ``127.0.0.1``:
    uvicorn puts the header's address in the ASGI scope, so Django's
    ``REMOTE_ADDR`` is what a local client wrote, before any rule of ours runs.
    The port exporter reads its socket and is not fooled; ``--no-proxy-headers``
    makes the view decide as the port does.
    """
    rules = {"PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/8"]}
    claim = xff(b"10.1.2.3")
    for args, view_status in ((uvicorn, 200), (uvicorn_without_proxy_headers, 403)):
        port, export = free_ports(2)
        env = {"EXPORTS_SETTINGS": json.dumps(rules), "EXPORTS_PORT": str(export)}
        with serve(args(port), [port, export], tmp_path, **env):
            status, body = raw(port, claim)
            assert status == view_status
            assert (METRIC in body) is (status == 200)
            status, body = raw(export, claim)
            assert_no_metric_bytes(status, 403, body)
