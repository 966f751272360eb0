"""The seams the core receives, as types: what Python hands the HTTP recorders and ``set_features``.

Neither core checks these at run time (the compiled one reads the attributes
once, when a recorder is built); they state what
``django_prometheus.http.cells.HttpCells`` and ``django_prometheus.http.features``
promise, and ``tests/test_seams.py`` holds the real objects to them. Like the
rest of ``_core``, this imports nothing from Django or django_prometheus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


class Cell(Protocol):
    """A counter or gauge cell (``inc``), or a histogram cell (``observe``): what a family hands out."""


#: A labelled family's ``labels``: label values -> the cell of that combination (kept by the caller).
Labels = Callable[..., Any]


@runtime_checkable
class HttpCells(Protocol):
    """What the HTTP recorders read, once, when they are built (``BeforeRecorder(cells)``...).

    Per family of ``http.metrics.SPECS``: the cell of an unlabelled family, or
    the ``labels`` of a labelled one. Then the Django objects the fast paths
    compare against (the core imports nothing from Django) and the core's
    ``Settings``.
    """

    # Unlabelled: one cell each.
    requests_total: Cell
    responses_total: Cell
    requests_latency_before: Cell
    requests_unknown_latency_before: Cell
    requests_unknown_latency: Cell
    requests_ajax: Cell
    requests_body_bytes: Cell
    responses_body_bytes: Cell
    responses_streaming: Cell
    # Labelled: values -> cell.
    requests_by_method: Labels
    requests_by_transport: Labels
    requests_by_view_transport_method: Labels
    requests_latency_by_view_method: Labels
    responses_by_status: Labels
    responses_by_status_view_method: Labels
    responses_by_charset: Labels
    responses_by_templatename: Labels
    exceptions_by_type: Labels
    exceptions_by_view: Labels
    #: ``_http.Settings`` (read per request without a Python call), or any object with its fields.
    settings: Any
    #: ``(HttpResponseBase, HttpResponse, StreamingHttpResponse)``.
    response_types: tuple[type, type, type]
    #: ``(HttpRequest.is_secure, HttpRequest.scheme)``: a request class that keeps both is read fast.
    secure_methods: tuple[Any, Any]
    #: ``(request class, attribute, key, its _get_scheme)``: where the server's scheme is kept.
    scheme_sources: tuple[tuple[type, str, str, Any], ...]


@runtime_checkable
class Features(Protocol):
    """What ``_http.set_features`` installs: the opt-in HTTP features, called around each request.

    ``outer`` is True for the Before middleware's call, False for the After's;
    ``state`` is what ``begin`` returned. Each call may raise: the core logs it
    and records the request as if no feature were on.
    """

    #: True when exclusions wait for the view: the core counts once ``end`` has answered.
    defer: bool

    def begin(self, request: Any, outer: bool) -> Any:
        """Start the request's features; the core's ``SKIP`` when it is not recorded at all."""
        ...

    def end(self, request: Any, response: Any, state: Any, outer: bool) -> Any:
        """Finish them with the response; the core's ``SKIP`` when the request is excluded after all."""
        ...

    def abort(self, request: Any, state: Any, outer: bool) -> None:
        """Finish them for a request whose ``get_response`` raised."""
        ...

    def excluded(self, request: Any) -> bool:
        """Whether the After middleware's view, template and exception hooks skip this request."""
        ...
