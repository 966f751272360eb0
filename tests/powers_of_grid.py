"""``PowersOf`` over a grid of arguments, as JSON: the same grid for ours and for upstream's.

Recorded from django-prometheus 2.5.0 into ``tests/data/powers_of_2_5_0.json`` with
``<venv with django-prometheus==2.5.0>/bin/python tests/powers_of_grid.py > tests/data/powers_of_2_5_0.json``
(run outside the checkout, or with ``-I``, so that upstream's package is the one imported).
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from typing import Any

BASES = (2, 3, 10, 0.5, 1, -2, 0)
COUNTS = (-1, 0, 1, 2, 5)
LOWERS = (-2, 0, 1, 3)
INCLUDE_ZERO = (True, False, 0, 1, None, "")
ODD_CALLS = ((2, 3, 0.5), (2, 2.0, 0))  # a float lower or count


def _outcome(call: Callable[[], Any]) -> list[str]:
    try:
        return ["ok", repr(call())]
    except Exception as exc:  # noqa: BLE001 - which exception is part of the behaviour
        return ["raise", type(exc).__name__]


def grid(powers_of: Callable[..., Any]) -> list[list[Any]]:
    """``[repr(base), count, lower, repr(include_zero), [outcome, repr or exception name]]`` per call."""
    rows = []
    for base, count, lower, iz in itertools.product(BASES, COUNTS, LOWERS, INCLUDE_ZERO):
        outcome = _outcome(lambda: powers_of(base, count, lower=lower, include_zero=iz))  # noqa: B023 - called now
        rows.append([repr(base), count, lower, repr(iz), outcome])
    for base, count, lower in ODD_CALLS:
        outcome = _outcome(lambda: powers_of(base, count, lower))  # noqa: B023 - called now
        rows.append([repr(base), repr(count), repr(lower), "True", outcome])
    return rows


if __name__ == "__main__":
    from django_prometheus.utils import PowersOf

    json.dump(grid(PowersOf), sys.stdout)
