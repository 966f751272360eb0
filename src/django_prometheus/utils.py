"""Small helpers kept for compatibility with django-prometheus' public API."""

from __future__ import annotations

from timeit import default_timer


def Time() -> float:
    """A monotonic timestamp, in seconds, for measuring durations with :func:`TimeSince`."""
    return default_timer()


def TimeSince(t: float) -> float:
    """Seconds elapsed since ``t``, a value returned by :func:`Time`."""
    return default_timer() - t


def PowersOf(logbase: float, count: int, lower: int = 0, include_zero: bool = True) -> list[float]:
    """``count`` bounds ``logbase**lower … logbase**(lower+count-1)``, preceded by 0 if ``include_zero``.

    Upstream's rule: ``PowersOf(3, 5, lower=1) == [0, 3, 9, 27, 81, 243]``.
    """
    powers = [logbase**exponent for exponent in range(lower, lower + count)]
    return [0, *powers] if include_zero else powers
