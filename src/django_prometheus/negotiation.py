"""What a scraper asked for: the exposition format (``Accept``) and gzip (``Accept-Encoding``).

The Prometheus scrape protocol's content negotiation (prometheus/docs
``content_negotiation.md``; prometheus_client's ``choose_encoder``): the
supported type with the highest ``q`` wins (ties: the first named; a wildcard
loses a tie to a named type); the text format ``version=0.0.4`` when nothing
supported is asked for, for ``*/*`` and with no ``Accept`` at all; the 1.0.0
formats only when asked for, and then the ``Content-Type`` names the escaping
scheme of the names written (``escaping=``, ``underscores`` when the scraper
names none or one we do not know).

Our own parser, not prometheus_client's: a header a client sends never makes
a scrape fail (never a 406); ``q=0`` means "not this"; the Content-Type sent
is always one we produce, never text echoed from the request.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ALLOW_UTF8",
    "DOTS",
    "OPENMETRICS",
    "PROTOBUF",
    "SCHEMES",
    "TEXT",
    "TEXT_0_0_4",
    "UNDERSCORES",
    "VALUES",
    "Format",
    "choose",
    "gzip_accepted",
]

#: Format kinds.
TEXT = "text"
OPENMETRICS = "openmetrics"
#: Chosen only when the caller can write it (``choose(..., protobuf=True)``).
PROTOBUF = "protobuf"

#: Escaping schemes (prometheus_client's ``openmetrics.exposition`` constants, by value).
ALLOW_UTF8 = "allow-utf-8"
UNDERSCORES = "underscores"
DOTS = "dots"
VALUES = "values"
SCHEMES = frozenset({ALLOW_UTF8, UNDERSCORES, DOTS, VALUES})

_PROTOBUF_TYPE = "application/vnd.google.protobuf"
_PROTOBUF_PROTO = "io.prometheus.client.MetricFamily"


class Format(NamedTuple):
    """What a scrape answers with: the format's kind and version, the names' escaping, its Content-Type."""

    kind: str  # TEXT, OPENMETRICS or PROTOBUF
    version: str  # "0.0.4" / "1.0.0" for TEXT, "0.0.1" / "1.0.0" for OPENMETRICS, "" for PROTOBUF
    escaping: str  # the escaping scheme of metric and label names (one of SCHEMES)
    content_type: str

    @property
    def openmetrics(self) -> bool:
        return self.kind == OPENMETRICS


def _format(kind: str, version: str, escaping: str) -> Format:
    if kind == PROTOBUF:
        content_type = f"{_PROTOBUF_TYPE}; proto={_PROTOBUF_PROTO}; encoding=delimited; escaping={escaping}"
    elif kind == OPENMETRICS:
        content_type = f"application/openmetrics-text; version={version}; charset=utf-8"
    else:
        content_type = f"text/plain; version={version}; charset=utf-8"
    if kind != PROTOBUF and version == "1.0.0":
        content_type += f"; escaping={escaping}"
    return Format(kind, version, escaping, content_type)


#: The text format 0.0.4: the default, the fallback, and what ``*/*`` gets. Its names are
#: always the legacy character set (underscores).
TEXT_0_0_4 = _format(TEXT, "0.0.4", UNDERSCORES)
# Headers longer than this are not a scraper's: only their beginning is read.
_MAX_HEADER = 4096


def _split(header: str, sep: str) -> list[str]:
    """``header`` split at ``sep`` outside quoted strings (RFC 9110's quoted-string, backslash escapes)."""
    if '"' not in header:  # what scrapers send: no quoted string, str.split does it
        return header.split(sep)
    parts, start, quoted, escaped = [], 0, False, False
    for i, ch in enumerate(header):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(header[start:i])
            start = i + 1
    parts.append(header[start:])
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner, out, escaped = value[1:-1], [], False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def _elements(header: str | None) -> list[tuple[str, dict[str, str], float]]:
    """``(token, params, q)`` for each well-formed element of a comma-separated header; others skipped."""
    elements = []
    for element in _split((header or "")[:_MAX_HEADER], ","):
        token, *raw_params = _split(element, ";")
        token = token.strip().lower()
        if not token:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            name, eq, value = raw.partition("=")
            if not eq:
                continue
            params[name.strip().lower()] = _unquote(value)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            continue
        if not 0.0 <= q <= 1.0:  # nan fails both comparisons
            continue
        elements.append((token, params, q))
    return elements


def _candidate(token: str, params: dict[str, str], protobuf: bool, schemes: frozenset[str]) -> Format | None:
    """The format an ``Accept`` element asks for, if we write it."""
    version = params.get("version", "")
    escaping = params.get("escaping", UNDERSCORES)
    if escaping not in schemes:
        escaping = UNDERSCORES
    if token == "application/openmetrics-text":
        if version == "0.0.1":
            return _format(OPENMETRICS, "0.0.1", UNDERSCORES)
        if version in ("1.0.0", ""):  # no version: the latest, as prometheus_client answers
            return _format(OPENMETRICS, "1.0.0", escaping)
        return None
    if token == "text/plain":
        if version in ("0.0.4", ""):
            return TEXT_0_0_4
        if version == "1.0.0":
            return _format(TEXT, "1.0.0", escaping)
        return None
    if token in ("*/*", "text/*"):
        return TEXT_0_0_4
    if (
        protobuf
        and token == _PROTOBUF_TYPE
        and params.get("proto") == _PROTOBUF_PROTO
        and params.get("encoding") == "delimited"
    ):
        return _format(PROTOBUF, "", escaping)
    return None


def choose(accept: str | None, protobuf: bool = False, schemes: frozenset[str] = SCHEMES) -> Format:
    """The format to answer ``accept`` with; ``TEXT_0_0_4`` when it asks for nothing we write.

    ``protobuf``: the caller can write the delimited protobuf format, so it
    may be chosen (else that element of the header is skipped). ``schemes``:
    the escaping schemes the writer can apply; another one asked for is
    answered with ``underscores``, and the Content-Type says so.
    """
    best: Format | None = None
    best_rank = (0.0, False)
    for token, params, q in _elements(accept):
        if q <= 0.0:
            continue
        found = _candidate(token, params, protobuf, schemes)
        if found is None:
            continue
        rank = (q, not token.endswith("/*"))
        if rank > best_rank:  # strictly better: on a tie the first named stays
            best, best_rank = found, rank
    return best if best is not None else TEXT_0_0_4


def gzip_accepted(accept_encoding: str | None) -> bool:
    """True when ``Accept-Encoding`` allows gzip: gzip (or x-gzip) with q > 0, or ``*`` if gzip is unnamed."""
    named = wildcard = None
    for token, _params, q in _elements(accept_encoding):
        if token in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif token == "*":
            wildcard = q
    if named is not None:
        return named > 0.0
    return wildcard is not None and wildcard > 0.0
