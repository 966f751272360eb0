"""What a scraper asked for: the exposition format (``Accept``) and gzip (``Accept-Encoding``).

Our own parser, not prometheus_client's: a header a client sends never makes a
scrape fail. Unparseable or unsupported values fall back to the text format
(never a 406); ``q=0`` means "not this"; the Content-Type sent is always one we
produce, never a version echoed from the request.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

__all__ = ["OPENMETRICS_CONTENT_TYPE", "TEXT_CONTENT_TYPE", "gzip_accepted", "wants_openmetrics"]

#: The text exposition's Content-Type: prometheus_client's (and upstream's view's).
TEXT_CONTENT_TYPE: str = prometheus_client.CONTENT_TYPE_LATEST

# Versions whose request we answer with what render() makes (OpenMetrics 1.0.0;
# 0.0.1 is the draft Prometheus still lists). Any other version is "not supported".
_OPENMETRICS_VERSIONS = frozenset({"", "1.0.0", "0.0.1"})
_TEXT_VERSIONS = frozenset({"", "0.0.4", "1.0.0"})
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


def wants_openmetrics(accept: str | None) -> bool:
    """True when ``Accept`` prefers a supported OpenMetrics version to the text format.

    The highest ``q`` wins; a tie goes to OpenMetrics, which a scraper names
    only when it wants it. Wildcards (``*/*``, ``text/*``) mean the text format.
    """
    best_openmetrics = best_text = 0.0
    for token, params, q in _elements(accept):
        version = params.get("version", "")
        if token == "application/openmetrics-text":
            if version in _OPENMETRICS_VERSIONS:
                best_openmetrics = max(best_openmetrics, q)
        elif token in ("text/plain", "text/*", "*/*"):
            if token != "text/plain" or version in _TEXT_VERSIONS:
                best_text = max(best_text, q)
    return best_openmetrics > 0.0 and best_openmetrics >= best_text


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
