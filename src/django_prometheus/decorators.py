"""``do_not_track``: a view whose requests appear in no HTTP metric family."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from django_prometheus._core import _features

__all__ = ["do_not_track"]

V = TypeVar("V", bound=Callable[..., Any])


def do_not_track(view: V) -> V:
    """Exclude a view (a function, a class-based view or its ``as_view()``) from every HTTP family.

    The view is marked, not wrapped (no cost per call). URLconfs load lazily,
    after the middlewares exist, so marking a view also switches the view
    exclusions on (``django_prometheus.http.features``).
    """
    try:
        setattr(view, _features.DO_NOT_TRACK, True)
    except (AttributeError, TypeError):  # a bound method or a builtin: wrap it instead
        view = _wrapped(view)
    from django_prometheus.http import features

    features.view_marked()
    return view


def _wrapped(view: Any) -> Any:
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            return await view(*args, **kwargs)

        wrapper: Any = awrapper
    else:

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

    setattr(wrapper, _features.DO_NOT_TRACK, True)
    return wrapper
