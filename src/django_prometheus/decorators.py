"""``do_not_track``: a view whose requests appear in no HTTP metric family."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django_prometheus._core import _extras

__all__ = ["do_not_track"]

V = TypeVar("V", bound=Callable[..., Any])


def do_not_track(view: V) -> V:
    """Exclude a view (a function, a class-based view or its ``as_view()``) from every HTTP family.

    The view is marked, not wrapped (no cost per call). URLconfs load lazily,
    after the middlewares exist, so marking a view also switches the view
    exclusions on (``django_prometheus.http.extras``).
    """
    try:
        setattr(view, _extras.DO_NOT_TRACK, True)
    except (AttributeError, TypeError):  # a bound method or a builtin: wrap it instead

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        setattr(wrapper, _extras.DO_NOT_TRACK, True)
        view = wrapper  # type: ignore[assignment]
    from django_prometheus.http import extras

    extras.view_marked()
    return view
