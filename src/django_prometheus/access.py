"""Who may read the metrics: bearer tokens, basic auth and allowed addresses (opt-in; open by default).

One rule set guards the view and the port exporters alike. Every configured
rule is enforced: an address outside ``PROMETHEUS_METRICS_ALLOWED_IPS`` gets
403; when tokens or users are configured, a request without a matching
``Authorization`` gets 401 with ``WWW-Authenticate``. Credentials are compared
in constant time (digests of equal length, every configured one compared).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured

__all__ = ["Denied", "Rules", "check", "joined", "rules"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Prometheus sends "Authorization: Bearer <token>" (authorization/credentials in scrape_config)
# or basic auth (basic_auth); one challenge per configured scheme.
_REALM = 'realm="metrics"'


class Denied(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Rules(NamedTuple):
    tokens: list[bytes] | None  # sha256 digests
    users: list[tuple[bytes, bytes]] | None  # (sha256(user), sha256(password))
    allowed: list[IPNetwork] | None
    proxies: list[IPNetwork]

    @property
    def open(self) -> bool:
        return self.tokens is None and self.users is None and self.allowed is None


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


def _strings(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise ImproperlyConfigured(f"{name} must be a list of strings, not {value!r}")
    return list(value)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _network(text: str) -> IPNetwork:
    """``text`` as a network; an IPv4-mapped one (``::ffff:10.0.0.0/104``) as the IPv4 network it maps.

    Client addresses that arrive IPv4-mapped (a dual-stack socket's
    ``::ffff:127.0.0.1``) are compared as IPv4 (``_address``), so an entry
    written in the mapped form must be IPv4 too, or it would match nobody.
    """
    network = ipaddress.ip_network(text.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        mapped = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _networks(name: str, value: Any) -> list[IPNetwork]:
    try:
        return [_network(v) for v in _strings(name, value)]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc} (give addresses or CIDRs, e.g. '10.0.0.0/8')") from None


def rules() -> Rules:
    """The rules the settings ask for; ImproperlyConfigured when a setting cannot be understood.

    A setting that is present is enforced even when it holds nothing usable
    (an empty list, an empty token): nobody passes it, rather than everybody.
    """
    from django_prometheus import conf

    # Each read checks the value against its rule (conf.SETTINGS): ImproperlyConfigured if it breaks it.
    tokens = conf.get("PROMETHEUS_METRICS_BEARER_TOKENS")
    users = conf.get("PROMETHEUS_METRICS_BASIC_AUTH")
    allowed = conf.get("PROMETHEUS_METRICS_ALLOWED_IPS")
    proxies = conf.get("PROMETHEUS_METRICS_TRUSTED_PROXIES")
    return Rules(
        tokens=None
        if tokens is None
        else [_digest(t) for t in _strings("PROMETHEUS_METRICS_BEARER_TOKENS", tokens) if t],
        users=None if users is None else [(_digest(u), _digest(p)) for u, p in users.items() if u and p],
        allowed=None if allowed is None else _networks("PROMETHEUS_METRICS_ALLOWED_IPS", allowed),
        proxies=[] if proxies is None else _networks("PROMETHEUS_METRICS_TRUSTED_PROXIES", proxies),
    )


def joined(lines: list[str] | None) -> str | None:
    """A header's repeated lines as one value, as WSGI and ASGI servers hand it to Django.

    RFC 9110 §5.3: a field sent on several lines is the comma-joined list of
    their values, in order. gunicorn, uvicorn (through Django's ASGIRequest)
    and Django's runserver join them with ",", each value stripped of the
    spaces and tabs around it; a port exporter must read the very same string,
    or a client could add a line the view would read and the port would not.
    None when the header is absent.
    """
    if not lines:
        return None
    return ",".join(line.strip(" \t") for line in lines)


def _address(text: str | None) -> IPAddress | None:
    text = (text or "").strip()
    if text.startswith("[") and "]" in text:  # "[::1]" or "[::1]:8080"
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's "::ffff:10.1.2.3"
    return address


def _within(address: IPAddress, networks: list[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, proxies: list[IPNetwork]
) -> IPAddress | None:
    """``REMOTE_ADDR``, or, when that is a trusted proxy, the last untrusted hop of X-Forwarded-For.

    Hops are read right to left (each proxy appends the address it saw), so a
    client cannot choose its address by sending the header itself. None when
    an address cannot be parsed: such a client is allowed nowhere.
    """
    address = _address(remote_addr)
    if address is None or not forwarded_for or not _within(address, proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            return None
        address = hop_address
        if not _within(address, proxies):
            break
    return address


def _credentials_ok(authorization: str | None, found: Rules) -> bool:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    ok = False
    if found.tokens is not None and scheme == "bearer":
        presented = _digest(credentials)
        for token in found.tokens:  # every one, not the first match: no timing hint of which
            ok |= hmac.compare_digest(presented, token)
    if found.users is not None and scheme == "basic":
        try:
            user, sep, password = base64.b64decode(credentials, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not sep:
            return False
        user, password = _digest(user), _digest(password)
        for expected_user, expected_password in found.users:
            ok |= hmac.compare_digest(user, expected_user) & hmac.compare_digest(password, expected_password)
    return ok


def check(remote_addr: str | None, forwarded_for: str | None, authorization: str | None) -> Denied | None:
    """None when the request may read the metrics, else the response to send instead."""
    found = rules()
    if found.open:
        return None
    if found.allowed is not None:
        address = client_address(remote_addr, forwarded_for, found.proxies)
        if address is None or not _within(address, found.allowed):
            return Denied(403, [("Content-Type", "text/plain; charset=utf-8")], b"Forbidden\n")
    if (found.tokens is not None or found.users is not None) and not _credentials_ok(authorization, found):
        challenges = []
        if found.tokens is not None:
            challenges.append(f"Bearer {_REALM}")
        if found.users is not None:
            challenges.append(f'Basic {_REALM}, charset="UTF-8"')
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", ", ".join(challenges))]
        return Denied(401, headers, b"Unauthorized\n")
    return None
