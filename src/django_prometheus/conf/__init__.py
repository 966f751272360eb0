"""Every ``PROMETHEUS_*`` setting in one table (default and validation), and the environment rules.

Django's ``global_settings`` idea: ``SETTINGS`` names each setting the package
reads, with its default and the rule a value must follow; every read goes
through ``get()`` (the validated value, or ``ImproperlyConfigured`` naming the
setting, the value and what is expected) and ``manage.py check`` reports each
bad setting in one message (``checks.py``). Adding a setting is one line in
``SETTINGS``.

Like upstream, a module that imports this before settings are configured (a tool,
a docs build, a test runner's collection) gets the defaults instead of an
``ImproperlyConfigured`` error. Two moments read settings: the module-level
families (DB, cache, models, migrations) read ``NAMESPACE`` and
``PROMETHEUS_LATENCY_BUCKETS`` once, at import, as upstream does (a bad value
gives the default there, so that app loading still reaches ``manage.py check``);
the HTTP ``Metrics`` call ``namespace()`` and ``latency_buckets()`` when the
middleware is built, so ``override_settings`` in tests reaches them.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_prometheus._core._dispatch import NO_EXTENSIONS
from django_prometheus.utils import PowersOf

__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "NAMESPACE",
    "NO_EXTENSIONS",
    "PROMETHEUS_LATENCY_BUCKETS",
    "SETTINGS",
    "Setting",
    "errors",
    "get",
    "get_or_default",
    "latency_buckets",
    "multiprocess_dir",
    "namespace",
    "refuse_if_invalid",
    "setting",
]

DEFAULT_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, float("inf"),
)  # fmt: skip
#: Buckets of django_cache_operation_duration_seconds: cache calls take microseconds to milliseconds.
DEFAULT_CACHE_OPERATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf"),
)  # fmt: skip

#: The system check id of a setting of the wrong type or value (the access settings: E001).
BAD_SETTING = "django_prometheus.E002"
BAD_ACCESS_SETTING = "django_prometheus.E001"

Validator = Callable[[str, Any], Any]


def _bad(name: str, expected: str, value: Any) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name} must be {expected}, not {value!r}")


# --- the rules a value follows: ``rule(name, value)`` returns the value or raises ---------------


def any_value(name: str, value: Any) -> Any:
    """Upstream read it for its truth value: anything goes."""
    return value


def flag(name: str, value: Any) -> bool:
    """``True`` or ``False``."""
    if not isinstance(value, bool):
        raise _bad(name, "True or False", value)
    return value


def text(name: str, value: Any) -> str:
    """A string."""
    if not isinstance(value, str):
        raise _bad(name, "a string", value)
    return value


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def growth_factor(name: str, value: Any) -> Any:
    """A number greater than 1: the growth from one native bucket to the next (e.g. 1.1)."""
    if not _finite(value) or not value > 1:
        raise _bad(
            name, "a number greater than 1 (the growth factor from one bucket to the next, e.g. 1.1)", value
        )
    return value


def zero_threshold(name: str, value: Any) -> Any:
    """A finite number >= 0 (observations with abs(v) <= it count as zero)."""
    if not _finite(value) or value < 0:
        raise _bad(name, "a finite number >= 0 (observations with abs(v) <= it count as zero)", value)
    return value


def bucket_limit(name: str, value: Any) -> Any:
    """A whole number >= 0 (0: no limit)."""
    if type(value) is not int or not 0 <= value <= 0x7FFFFFFF:
        raise _bad(name, "a whole number >= 0 (0: no limit)", value)
    return value


def path(name: str, value: Any) -> Any:
    """A filesystem path (a string or a ``pathlib.Path``)."""
    if not isinstance(value, (str, os.PathLike)):
        raise _bad(name, "a path (a string or a pathlib.Path)", value)
    return value


def strings(name: str, value: Any) -> tuple[str, ...]:
    """A list (tuple, set) of non-empty strings; a lone string is refused (it would be its characters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise _bad(name, "a list of strings", value)
    for item in value:
        if not isinstance(item, str) or not item:
            raise ImproperlyConfigured(f"{name} must be a list of non-empty strings; {item!r} is not one")
    return tuple(value)


def flag_or_strings(name: str, value: Any) -> Any:
    """``True``, ``False``, or a list of names (non-empty strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise _bad(name, "True, False or a list of names", value)
    return strings(name, value)


def regexes(name: str, value: Any) -> tuple[str, ...]:
    """A list of regular expressions."""
    patterns = strings(name, value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ImproperlyConfigured(f"{name}: {pattern!r} is not a regex ({exc})") from None
    return patterns


def buckets(name: str, value: Any) -> tuple[Any, ...]:
    """Histogram upper bounds: numbers, strictly increasing (``+Inf`` is added if missing)."""
    expected = 'an increasing sequence of numbers, e.g. (0.1, 0.5, 1.0, float("inf"))'
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise _bad(name, expected, value)
    bounds = tuple(value)
    floats = []
    for bound in bounds:
        # prometheus_client reads each bound with float(): numeric strings were accepted upstream.
        try:
            number = float(bound)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(bound, bool) or math.isnan(number):
            raise ImproperlyConfigured(f"{name} must be {expected}; {bound!r} is not a number (in {value!r})")
        floats.append(number)
    if any(later <= earlier for earlier, later in zip(floats, floats[1:], strict=False)):
        raise ImproperlyConfigured(f"{name} must be {expected}; {value!r} is not increasing")
    if not floats or floats == [math.inf]:
        raise ImproperlyConfigured(f"{name} must be {expected}, with a finite bound, not {value!r}")
    return bounds


def _is_port(value: Any) -> bool:
    # A number, or its digits (a setting read from the environment): the exporter binds int(port).
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def port(name: str, value: Any) -> Any:
    """A TCP port (1-65535, or its digits); a false value (None, 0) is none, as upstream reads it."""
    if not value:
        return value
    if not _is_port(value):
        raise _bad(name, "a port number (1-65535) or None", value)
    return value


def ports(name: str, value: Any) -> Any:
    """A range or list of ports; a false value (None, an empty list) is none, as upstream reads it."""
    if not value:
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise _bad(name, "a range or list of port numbers, e.g. range(8001, 8050)", value)
    for item in value:
        if not _is_port(item):
            raise ImproperlyConfigured(f"{name} must hold port numbers (1-65535); {item!r} is not one")
    return value


def databases(name: str, value: Any) -> Any:
    """True, False, None, or a list of aliases of ``DATABASES``."""
    if value is True or value is False or value is None:
        return value
    if isinstance(value, str) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise _bad(name, "True, False or a list of database aliases", value)
    aliases = list(value)
    bad = [a for a in aliases if not isinstance(a, str)]
    if bad:
        raise ImproperlyConfigured(f"{name}: aliases are strings, got {bad!r}")
    unknown = sorted(set(aliases) - set(settings.DATABASES))
    if unknown:
        raise ImproperlyConfigured(f"{name} names aliases that are not in DATABASES: {', '.join(unknown)}")
    return value


def optional(rule: Validator) -> Validator:
    """``rule``, or None (the setting is off)."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else rule(name, value)

    check.__doc__ = f"None, or: {rule.__doc__}"
    return check


def tokens(name: str, value: Any) -> Any:
    """A string, or a list of strings."""
    if isinstance(value, str):
        return value
    listed = isinstance(value, Iterable) and not isinstance(value, Mapping)
    if not listed or not all(isinstance(v, str) for v in value):
        raise _bad(name, "a list of strings", value)
    return value


def networks(name: str, value: Any) -> Any:
    """An address or CIDR, or a list of them (``"10.0.0.0/8"``, ``"::1"``)."""
    tokens(name, value)
    for item in [value] if isinstance(value, str) else value:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError as exc:
            message = f"{name}: {exc} (give addresses or CIDRs, e.g. '10.0.0.0/8')"
            raise ImproperlyConfigured(message) from None
    return value


def users(name: str, value: Any) -> Any:
    """A dict ``{"user": "password"}``."""
    pairs = value.items() if isinstance(value, Mapping) else None
    if pairs is None or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise ImproperlyConfigured(f'{name} must be a dict {{"user": "password"}}, not {value!r}')
    return value


class Setting(NamedTuple):
    """A row of ``SETTINGS``: the default, the rule (``rule(name, value)``), the check id of a bad value."""

    default: Any
    rule: Validator
    check_id: str = BAD_SETTING


#: Every ``PROMETHEUS_*`` setting the package reads: name -> (default, rule[, check id]).
SETTINGS: dict[str, Setting] = {
    "PROMETHEUS_METRIC_NAMESPACE": Setting("", text),
    "PROMETHEUS_LATENCY_BUCKETS": Setting(DEFAULT_LATENCY_BUCKETS, buckets),
    "PROMETHEUS_ROUTE_METRICS": Setting(False, flag),
    "PROMETHEUS_GROUP_STATUS_CODES": Setting(False, flag),
    "PROMETHEUS_EXCLUDE_PATHS": Setting((), regexes),
    "PROMETHEUS_EXCLUDE_VIEWS": Setting((), strings),
    "PROMETHEUS_INFLIGHT_METRICS": Setting(False, flag),
    "PROMETHEUS_QUEUE_TIME_METRICS": Setting(False, flag),
    "PROMETHEUS_INSTRUMENT_DATABASES": Setting(False, databases),
    "PROMETHEUS_REQUEST_DB_METRICS": Setting(False, flag),
    "PROMETHEUS_EXPORT_MIGRATIONS": Setting(False, any_value),
    "PROMETHEUS_METRICS_EXPORT_PORT": Setting(None, port),
    "PROMETHEUS_METRICS_EXPORT_PORT_RANGE": Setting(None, ports),
    "PROMETHEUS_METRICS_EXPORT_ADDRESS": Setting("", text),
    "PROMETHEUS_METRICS_BEARER_TOKENS": Setting(None, optional(tokens), BAD_ACCESS_SETTING),
    "PROMETHEUS_METRICS_BASIC_AUTH": Setting(None, optional(users), BAD_ACCESS_SETTING),
    "PROMETHEUS_METRICS_ALLOWED_IPS": Setting(None, optional(networks), BAD_ACCESS_SETTING),
    "PROMETHEUS_METRICS_TRUSTED_PROXIES": Setting(None, optional(networks), BAD_ACCESS_SETTING),
    "PROMETHEUS_EXEMPLARS": Setting(False, flag),
    "PROMETHEUS_CACHE_OPERATION_METRICS": Setting(False, flag),
    "PROMETHEUS_CACHE_OPERATION_BUCKETS": Setting(DEFAULT_CACHE_OPERATION_BUCKETS, buckets),
    "PROMETHEUS_TOTAL_BYTES_BUCKETS": Setting(tuple(PowersOf(2, 30)), buckets),
    "PROMETHEUS_IGNORED_EXCEPTIONS": Setting((), strings),
    "PROMETHEUS_DISABLED_METRICS": Setting((), strings),
    "PROMETHEUS_SERVER_TIMING": Setting(False, flag),
    "PROMETHEUS_SERVER_TIMING_ALLOWED_IPS": Setting(("127.0.0.0/8", "::1/128"), networks),
    "PROMETHEUS_NATIVE_HISTOGRAMS": Setting(False, flag),
    "PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR": Setting(1.1, growth_factor),
    "PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD": Setting(2.0**-128, zero_threshold),
    "PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS": Setting(160, bucket_limit),
    "PROMETHEUS_TASK_METRICS": Setting(False, flag),
    "PROMETHEUS_CELERY_METRICS": Setting(False, flag),
    "PROMETHEUS_COMMAND_METRICS": Setting(False, flag_or_strings),
    "PROMETHEUS_PUSHGATEWAY_URL": Setting(None, optional(text)),
    "PROMETHEUS_TEXTFILE_DIR": Setting(None, optional(path)),
}

_MISSING = object()


def get(name: str) -> Any:
    """``settings.<name>`` checked by its rule (``ImproperlyConfigured`` if it breaks it), or the default."""
    entry = SETTINGS[name]
    if not settings.configured:
        return entry.default
    value = getattr(settings, name, _MISSING)
    return entry.default if value is _MISSING else entry.rule(name, value)


def get_or_default(name: str) -> Any:
    """``get(name)``, or the default when the value is bad: for reads at import, which must not fail.

    A bad value is still reported by ``manage.py check`` and refused by the middlewares.
    """
    try:
        return get(name)
    except ImproperlyConfigured:
        return SETTINGS[name].default


def setting(name: str, default: Any = None) -> Any:
    """``get(name)`` for a setting of the table; otherwise ``settings.<name>``, or ``default``."""
    if name in SETTINGS:
        return get(name)
    return getattr(settings, name, default) if settings.configured else default


def errors() -> list[tuple[str, str, str]]:
    """``(name, check id, message)`` for each setting whose value breaks its rule."""
    if not settings.configured:
        return []
    found = []
    for name, entry in SETTINGS.items():
        try:
            get(name)
        except ImproperlyConfigured as exc:
            found.append((name, entry.check_id, str(exc)))
    return found


def refuse_if_invalid() -> None:
    """Raise ``ImproperlyConfigured`` with every bad setting's message (the middlewares, at start-up).

    The access settings are left to ``/metrics``, which answers 500 while they cannot be enforced.
    """
    found = [message for _, check_id, message in errors() if check_id != BAD_ACCESS_SETTING]
    if found:
        raise ImproperlyConfigured("; ".join(found))


def namespace() -> str:
    """``PROMETHEUS_METRIC_NAMESPACE``: prepended with ``_`` to every family name (default none)."""
    return get("PROMETHEUS_METRIC_NAMESPACE")


def latency_buckets() -> tuple[float, ...]:
    """``PROMETHEUS_LATENCY_BUCKETS``: the upper bounds of the latency histograms."""
    return tuple(get("PROMETHEUS_LATENCY_BUCKETS"))


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or None in single-process mode.

    prometheus_client's rule (``values.py``): multiprocess mode when
    ``PROMETHEUS_MULTIPROC_DIR`` or the older ``prometheus_multiproc_dir`` is
    present in the environment, even if empty (an empty path then fails loudly
    where the files are written or read, as it does in prometheus_client).
    """
    env = os.environ
    if "PROMETHEUS_MULTIPROC_DIR" not in env and "prometheus_multiproc_dir" not in env:
        return None
    return env.get("PROMETHEUS_MULTIPROC_DIR") or env.get("prometheus_multiproc_dir") or ""


#: ``PROMETHEUS_METRIC_NAMESPACE`` when this module was imported (upstream's name).
NAMESPACE: str = get_or_default("PROMETHEUS_METRIC_NAMESPACE")

#: ``PROMETHEUS_LATENCY_BUCKETS`` when this module was imported (upstream's name).
PROMETHEUS_LATENCY_BUCKETS = get_or_default("PROMETHEUS_LATENCY_BUCKETS")
