"""The HTTP twins side by side: the same requests through ``_http_c`` and ``_http_py`` give the same samples.

Each core records into cells of its own kind (``_cells_c`` / ``_cells_py``),
resolved by a small stand-in for ``HttpCells``; the same scripted requests and
responses go through both, then every cell's value is compared, and checked
against what upstream's rules give.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.test import RequestFactory
from django.urls import ResolverMatch

from django_prometheus.http.cells import HttpCells
from django_prometheus.http.metrics import BODY, LATENCY, SPECS
from django_prometheus.utils import PowersOf


class Cells:
    """What ``HttpCells`` hands the recorders, on one core's own cells; ``samples()`` reads them all back."""

    response_types = HttpCells.response_types
    settings = settings
    secure_methods = HttpCells.secure_methods
    scheme_sources = HttpCells.scheme_sources

    def __init__(self, core: Any, core_settings: Any = None) -> None:
        if core_settings is not None:  # the core's own Settings (what HttpCells hands in)
            self.settings = core_settings
        self._families: dict[str, Any] = {}
        for attr, spec in SPECS.items():
            if attr in LATENCY:
                bounds = (0.01, 0.1, 1.0, float("inf"))
            elif attr in BODY:
                bounds = tuple(PowersOf(2, 30))
            else:
                bounds = None

            def factory(values, bounds=bounds):
                return core.Counter() if bounds is None else core.Histogram(bounds)

            family = core.Family(factory)
            self._families[attr] = family
            if spec.labelnames:
                setattr(self, attr, lambda *values, family=family: family.get(tuple(map(str, values))))
            else:
                setattr(self, attr, family.get(()))

    def samples(self) -> dict[tuple[str, tuple[str, ...]], Any]:
        out: dict[tuple[str, tuple[str, ...]], Any] = {}
        for attr, family in self._families.items():
            for values, cell in family.children():
                if isinstance(cell.get() if hasattr(cell, "get") else None, float):
                    value: Any = cell.get()
                elif attr in LATENCY:  # durations differ run to run; their counts do not
                    value = cell.count
                else:
                    value = (tuple(cell.buckets()), cell.sum)
                if value:
                    out[attr, values] = value
        return out


def _resolved(request: Any, view_name: str | None) -> Any:
    if view_name is not None:
        request.resolver_match = ResolverMatch(lambda r: None, (), {}, url_name=view_name)
    return request


class _Quacking:
    """Not an HttpResponse: only a status and streaming flag (a view may return such a thing)."""

    status_code = 200
    streaming = True


def _requests() -> list[tuple[Any, Any, Exception | None]]:
    rf = RequestFactory()
    streaming = StreamingHttpResponse(iter([b"a", b"bc"]))
    template = TemplateResponse(rf.get("/"), "hello.html")
    template.content = b"Hello world"  # as if rendered
    return [
        (_resolved(rf.get("/ok"), "ok"), HttpResponse(b"ok"), None),
        (_resolved(rf.get("/ok", secure=True), "ok"), HttpResponse(b"ok", status=201), None),
        (_resolved(rf.generic("BREW", "/ok"), "ok"), HttpResponse(b""), None),
        (_resolved(rf.post("/e", b"x" * 1000, content_type="a/b"), "echo"), HttpResponse(b"x" * 1000), None),
        (_resolved(rf.get("/x", HTTP_X_REQUESTED_WITH="XMLHttpRequest"), "x"), JsonResponse({"a": 1}), None),
        (
            _resolved(rf.get("/l"), "latin"),
            HttpResponse(b"l", content_type="text/plain; charset=latin-1"),
            None,
        ),
        (_resolved(rf.get("/l"), "latin"), HttpResponse(b"l", charset="iso-8859-1"), None),
        (_resolved(rf.get("/s"), "stream"), streaming, None),
        (_resolved(rf.get("/t"), "tpl"), template, None),
        (rf.get("/nowhere"), HttpResponse(b"404", status=404), None),
        (_resolved(rf.get("/b"), "boom"), HttpResponse(b"err", status=500), ValueError("boom")),
        (rf.get("/q"), _Quacking(), None),
        # Content-Length: malformed, negative and absurd sizes are never observed.
        (_resolved(rf.get("/ok", CONTENT_LENGTH="abc"), "ok"), HttpResponse(b"ok"), None),
        (_resolved(rf.get("/ok", CONTENT_LENGTH="-5"), "ok"), HttpResponse(b"ok"), None),
        (_resolved(rf.get("/ok", CONTENT_LENGTH="9" * 400), "ok"), HttpResponse(b"ok"), None),
        (_resolved(rf.get("/ok", CONTENT_LENGTH=str(2**64)), "ok"), HttpResponse(b"ok"), None),
    ]


def _core_settings(http: Any) -> Any:
    return http.Settings(settings.DEFAULT_CHARSET, settings.SECURE_PROXY_SSL_HEADER)


def _stack(http: Any, cells: Any, view: Any) -> Any:
    """``(before, after)``: the core's middlewares, Before around After around ``view``, on ``cells``."""

    class Before(http.Middleware):
        pass

    class After(http.Middleware):
        pass

    after = After()
    after.get_response = view
    after._recorder = http.AfterRecorder(cells)
    before = Before()
    before.get_response = after
    before._recorder = http.BeforeRecorder(cells)
    return before, after


def _alone(http: Any, recorder: Any, view: Any = None) -> Any:
    """The core's middleware with ``recorder`` alone around ``view`` (an ``HttpResponse`` by default)."""

    class Alone(http.Middleware):
        pass

    middleware = Alone()
    middleware.get_response = view or (lambda request: HttpResponse(b"ok"))
    middleware._recorder = recorder
    return middleware


def _record(twin: Any, fast_settings: bool = False) -> dict[tuple[str, tuple[str, ...]], Any]:
    # The scripted requests through both middlewares' call (the default path: the recorders hand
    # their state from _begin to _end inside the core), the After hooks called as Django would.
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module, _core_settings(http) if fast_settings else None)
    scripted: dict[int, tuple[Any, Exception | None]] = {}

    def view(request: Any) -> Any:
        response, exception = scripted[id(request)]
        if request.resolver_match is not None:
            after.on_view(request, None, (), {})
        if exception is not None:
            after.on_exception(request, exception)
        if isinstance(response, TemplateResponse):
            after.on_template_response(request, response)
        return response

    before, after_middleware = _stack(http, cells, view)
    after = after_middleware._recorder
    for request, response, exception in _requests():
        scripted[id(request)] = (response, exception)
        assert before(request) is response
    return cells.samples()


EXPECTED = {
    ("requests_total", ()): 16.0,
    ("responses_total", ()): 16.0,
    ("requests_latency_before", ()): 16.0,
    ("requests_ajax", ()): 1.0,
    ("requests_by_method", ("GET",)): 14.0,
    ("requests_by_method", ("POST",)): 1.0,
    ("requests_by_method", ("<invalid method>",)): 1.0,
    ("requests_by_transport", ("http",)): 15.0,
    ("requests_by_transport", ("https",)): 1.0,
    ("requests_by_view_transport_method", ("ok", "http", "GET")): 5.0,
    ("requests_by_view_transport_method", ("ok", "https", "GET")): 1.0,
    ("requests_by_view_transport_method", ("ok", "http", "<invalid method>")): 1.0,
    ("requests_by_view_transport_method", ("echo", "http", "POST")): 1.0,
    ("requests_by_view_transport_method", ("x", "http", "GET")): 1.0,
    ("requests_by_view_transport_method", ("latin", "http", "GET")): 2.0,
    ("requests_by_view_transport_method", ("stream", "http", "GET")): 1.0,
    ("requests_by_view_transport_method", ("tpl", "http", "GET")): 1.0,
    ("requests_by_view_transport_method", ("boom", "http", "GET")): 1.0,
    ("responses_by_templatename", ("hello.html",)): 1.0,
    ("responses_by_status", ("200",)): 13.0,
    ("responses_by_status", ("201",)): 1.0,
    ("responses_by_status", ("404",)): 1.0,
    ("responses_by_status", ("500",)): 1.0,
    ("responses_by_status_view_method", ("200", "ok", "GET")): 5.0,
    ("responses_by_status_view_method", ("201", "ok", "GET")): 1.0,
    ("responses_by_status_view_method", ("200", "ok", "<invalid method>")): 1.0,
    ("responses_by_status_view_method", ("200", "echo", "POST")): 1.0,
    ("responses_by_status_view_method", ("200", "x", "GET")): 1.0,
    ("responses_by_status_view_method", ("200", "latin", "GET")): 2.0,
    ("responses_by_status_view_method", ("200", "stream", "GET")): 1.0,
    ("responses_by_status_view_method", ("200", "tpl", "GET")): 1.0,
    ("responses_by_status_view_method", ("404", "<unnamed view>", "GET")): 1.0,
    ("responses_by_status_view_method", ("500", "boom", "GET")): 1.0,
    ("responses_by_status_view_method", ("200", "<unnamed view>", "GET")): 1.0,
    ("responses_by_charset", ("utf-8",)): 13.0,
    ("responses_by_charset", ("latin-1",)): 1.0,
    ("responses_by_charset", ("iso-8859-1",)): 1.0,
    ("responses_streaming", ()): 2.0,
    ("requests_latency_by_view_method", ("ok", "GET")): 6.0,
    ("requests_latency_by_view_method", ("ok", "<invalid method>")): 1.0,
    ("requests_latency_by_view_method", ("echo", "POST")): 1.0,
    ("requests_latency_by_view_method", ("x", "GET")): 1.0,
    ("requests_latency_by_view_method", ("latin", "GET")): 2.0,
    ("requests_latency_by_view_method", ("stream", "GET")): 1.0,
    ("requests_latency_by_view_method", ("tpl", "GET")): 1.0,
    ("requests_latency_by_view_method", ("<unnamed view>", "GET")): 2.0,
    ("requests_latency_by_view_method", ("boom", "GET")): 1.0,
    ("exceptions_by_type", ("ValueError",)): 1.0,
    ("exceptions_by_view", ("boom",)): 1.0,
}


@pytest.fixture
def recorded(twin: Any) -> dict[tuple[str, tuple[str, ...]], Any]:
    return _record(twin)


def test_both_cores_record_the_same_samples(compiled_twin: Any, pure_twin: Any) -> None:
    assert _record(compiled_twin) == _record(pure_twin)


def test_the_core_settings_record_what_any_settings_object_records(recorded, twin):
    # The fast path (the core's Settings, read as fields) changes nothing.
    assert _record(twin, fast_settings=True) == recorded


@pytest.mark.parametrize("charset", ["utf-8", "latin-1", "UTF-16", '"koi8-r"'])
def test_settings_label_the_default_content_type_as_django_does(twin, charset, settings):
    http = twin.http
    settings.DEFAULT_CHARSET = charset
    core = _core_settings(http)
    response = HttpResponse(b"x")
    assert core.default_content_type == response["Content-Type"]
    assert core.default_content_type_charset == response.charset


def test_each_core_records_upstreams_counts(recorded, twin):
    samples = recorded
    counts = {k: v for k, v in samples.items() if k[0] not in BODY}
    assert counts == EXPECTED
    # Request bodies: 12 requests with an absent (0) or valid size, 1000 bytes once; 4 bad sizes skipped.
    buckets, total = samples["requests_body_bytes", ()]
    assert (buckets[-1], total) == (12.0, 1000.0)
    # Response bodies: every response with content (not the two streaming ones).
    buckets, total = samples["responses_body_bytes", ()]
    assert buckets[-1] == 14.0 and total == 2 + 2 + 0 + 1000 + 8 + 1 + 1 + 11 + 3 + 3 + 4 * 2


def test_label_rules_agree(twin):
    http = twin.http
    rf = RequestFactory()
    assert [http.sanitize_method(m) for m in ("GET", "PATCH", "BREW", "get", None, b"GET")] == [
        "GET",
        "PATCH",
        "<invalid method>",
        "<invalid method>",
        "<invalid method>",
        "<invalid method>",
    ]
    assert http.transport(rf.get("/", secure=True)) == "https" and http.transport(rf.get("/")) == "http"
    unresolved, empty = rf.get("/"), rf.get("/")
    empty.resolver_match = SimpleNamespace(view_name="")
    assert (http.view_name(unresolved), http.hook_view_name(unresolved)) == ("<unnamed view>", None)
    # Upstream's quirk: an empty name is kept by the response rule, mapped by the hook rule.
    assert (http.view_name(empty), http.hook_view_name(empty)) == ("", "<unnamed view>")
    sizes = [
        "",
        None,
        "0",
        "12",
        " 12 ",
        "abc",
        "-1",
        "1e3",
        "9" * 19,
        "9" * 400,
        "9" * 5000,
        7,
        2**63,
        2**63 - 1,
    ]
    assert [http.body_length(v) for v in sizes] == [
        0, 0, 0, 12, 12, None, None, None, None, None, None, 7, None, 2**63 - 1
    ]  # fmt: skip
    assert http.template_name(TemplateResponse(rf.get("/"), ["a.html", "b.html"])) == "['a.html', 'b.html']"
    assert http.template_name(HttpResponse()) is None
    assert http.charset(HttpResponse(charset="koi8-r")) == "koi8-r" and http.charset(_Quacking()) is None
    assert http.response_body_size(HttpResponse(b"abc")) == 3 and http.response_body_size(_Quacking()) is None


def test_middleware_call_records_around_get_response(twin):
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    response = HttpResponse(b"ok")

    class Before(http.Middleware):
        pass

    class After(http.Middleware):
        pass

    after = After()
    after.get_response = lambda request: response
    after._recorder = http.AfterRecorder(cells)
    before = Before()
    before.get_response = after
    before._recorder = http.BeforeRecorder(cells)
    request = _resolved(RequestFactory().get("/ok"), "ok")
    assert before(request) is response
    samples = cells.samples()
    assert samples["requests_total", ()] == samples["responses_total", ()] == 1.0
    assert samples["requests_latency_before", ()] == 1.0
    assert samples["requests_latency_by_view_method", ("ok", "GET")] == 1.0
    assert samples["responses_by_status_view_method", ("200", "ok", "GET")] == 1.0


def test_a_recording_failure_is_logged_and_the_request_served(twin, caplog, settings):
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    after = http.AfterRecorder(cells)
    request = RequestFactory().get("/ok")
    settings.SECURE_PROXY_SSL_HEADER = "not-a-pair"  # the transport rule raises
    with caplog.at_level(logging.ERROR, logger="django_prometheus"):
        response = _alone(http, after)(request)
    assert response.status_code == 200  # the request is served all the same
    logged = [r.getMessage() for r in caplog.records]
    assert any("could not record the HTTP metrics of a request" in m for m in logged)


class _OwnScheme(WSGIRequest):
    """A request class with its own idea of security: the transport rule must ask it."""

    def is_secure(self):
        return True


def test_transport_follows_is_secure_on_every_path(twin, settings):
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    after = http.AfterRecorder(cells)
    rf = RequestFactory()
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https"}
    middleware = _alone(http, after)
    middleware(rf.get("/", secure=True))  # the scheme the server passed
    middleware(rf.get("/", **forwarded))  # header ignored: no SECURE_PROXY_SSL_HEADER
    middleware(_OwnScheme(rf.get("/").environ))
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    middleware(rf.get("/", **forwarded))
    middleware(rf.get("/", HTTP_X_FORWARDED_PROTO="http", secure=True))
    samples = cells.samples()
    assert samples["requests_by_transport", ("https",)] == 3.0
    assert samples["requests_by_transport", ("http",)] == 2.0


class _Features:
    """A real ``set_features`` object: excludes ``/skip`` up front, ``/late`` once the response is known."""

    def __init__(self, http: Any, defer: bool = False) -> None:
        self.http, self.defer, self.calls = http, defer, []

    def begin(self, request, outer):
        self.calls.append(("begin", request.path, outer))
        return self.http.SKIP if request.path == "/skip" else request.path

    def end(self, request, response, state, outer):
        self.calls.append(("end", state, outer))
        return self.http.SKIP if state == "/late" else None

    def abort(self, request, state, outer):
        self.calls.append(("abort", state, outer))

    def excluded(self, request):
        return request.path in ("/skip", "/late")


@pytest.mark.parametrize("defer", [False, True])
def test_the_features_seam_excludes_and_defers(twin, defer):
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    response = HttpResponse(b"ok")
    before, after = _stack(http, cells, lambda request: response)
    features = _Features(http, defer=defer)
    http.set_features(features)
    try:
        assert http.get_features() is features
        rf = RequestFactory()
        for path in ("/skip", "/late", "/ok"):
            request = _resolved(rf.get(path), "ok")
            assert before(request) is response
            # the After recorder's hooks consult ``excluded`` while features are installed
            after._recorder.on_view(request)
    finally:
        http.set_features(None)
    assert http.get_features() is None
    samples = cells.samples()
    # /skip is never recorded; /late only when its counts were not deferred; /ok always.
    seen = 1.0 if defer else 2.0
    assert samples["requests_total", ()] == samples["responses_total", ()] == seen
    assert samples["responses_by_status_view_method", ("200", "ok", "GET")] == seen
    # /skip and /late are excluded by the hooks too
    assert samples["requests_by_view_transport_method", ("ok", "http", "GET")] == 1.0
    assert [c for c in features.calls if c[0] == "begin"] == [
        ("begin", "/skip", True),
        ("begin", "/skip", False),  # each middleware asks: the After may run without the Before
        ("begin", "/late", True),
        ("begin", "/late", False),
        ("begin", "/ok", True),
        ("begin", "/ok", False),
    ]


def test_the_features_seam_aborts_and_survives_failing_features(twin, caplog):
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)

    def boom(request):
        raise ValueError("view")

    before, _ = _stack(http, cells, boom)
    features = _Features(http)
    http.set_features(features)
    try:
        with pytest.raises(ValueError, match="view"):
            before(_resolved(RequestFactory().get("/ok"), "ok"))
        assert ("abort", "/ok", True) in features.calls and ("abort", "/ok", False) in features.calls

        class Broken:
            defer = False

            def begin(self, request, outer):
                raise RuntimeError("features")

        http.set_features(Broken())
        ok = HttpResponse(b"ok")
        before, _ = _stack(http, cells, lambda request: ok)
        with caplog.at_level(logging.ERROR, logger="django_prometheus"):
            assert before(_resolved(RequestFactory().get("/ok"), "ok")) is ok
    finally:
        http.set_features(None)
    assert cells.samples()["responses_total", ()] == 1.0  # recorded as if no feature were on
    assert any("opt-in features" in r.getMessage() for r in caplog.records)


def test_interleaved_and_nested_requests_keep_their_own_labels(twin):
    # What _begin hands to on_view and _end (per thread in the compiled core) belongs to one
    # request: requests that interleave (ASGI) or nest (a view serving a request inside its
    # own, through this recorder or another one) keep their own method, transport and view.
    import asyncio

    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    after, other = http.AfterRecorder(cells), http.AfterRecorder(cells)
    rf = RequestFactory()
    a = _resolved(rf.get("/a"), "a")
    b = _resolved(rf.post("/b", secure=True), "b")

    async def interleaved(request: Any) -> Any:
        after.on_view(request)
        await asyncio.sleep(0)  # the other request begins, and reads its view, meanwhile
        return HttpResponse(b"a") if request is a else HttpResponse(b"b", status=201)

    middleware = _alone(http, after, interleaved)
    middleware.async_mode = True

    async def both() -> None:
        await asyncio.gather(middleware(a), middleware(b))

    asyncio.run(both())

    outer, inner = _resolved(rf.put("/o"), "outer"), _resolved(rf.delete("/i"), "inner")
    elsewhere = _resolved(rf.patch("/u"), "elsewhere")
    nested_alone = _alone(http, other, lambda request: (other.on_view(request), HttpResponse(b"u"))[1])

    def nesting(request: Any) -> Any:
        after.on_view(request)
        if request is outer:
            middleware(inner)
            nested_alone(elsewhere)
        return HttpResponse(b"o")

    middleware = _alone(http, after, nesting)
    middleware(outer)
    samples = cells.samples()
    assert {k[1]: v for k, v in samples.items() if k[0] == "requests_by_view_transport_method"} == {
        ("a", "http", "GET"): 1.0,
        ("b", "https", "POST"): 1.0,
        ("outer", "http", "PUT"): 1.0,
        ("inner", "http", "DELETE"): 1.0,
        ("elsewhere", "http", "PATCH"): 1.0,
    }
    assert {k[1]: v for k, v in samples.items() if k[0] == "responses_by_status_view_method"} == {
        ("200", "a", "GET"): 1.0,
        ("201", "b", "POST"): 1.0,
        ("200", "outer", "PUT"): 1.0,
        ("200", "inner", "DELETE"): 1.0,
        ("200", "elsewhere", "PATCH"): 1.0,
    }


def test_the_response_view_follows_a_resolver_match_changed_after_process_view(twin):
    # _end may reuse the name process_view read, only while the request keeps that match.
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    after = http.AfterRecorder(cells)
    rf = RequestFactory()
    replacements = ["second", None, ""]

    def view(request: Any) -> Any:
        after.on_view(request)
        replacement = replacements.pop(0)
        if replacement is None:
            request.resolver_match = None
        else:
            _resolved(request, "placeholder").resolver_match.view_name = replacement
        return HttpResponse(b"ok")

    middleware = _alone(http, after, view)
    while replacements:
        middleware(_resolved(rf.get("/"), "first"))
    samples = cells.samples()
    assert samples["requests_by_view_transport_method", ("first", "http", "GET")] == 3.0
    assert samples["responses_by_status_view_method", ("200", "second", "GET")] == 1.0
    assert samples["responses_by_status_view_method", ("200", "<unnamed view>", "GET")] == 1.0
    assert samples["responses_by_status_view_method", ("200", "", "GET")] == 1.0  # the response rule


def test_the_scheme_is_read_from_meta_and_asked_of_the_request_when_missing_there(twin):
    # WSGIRequest's META is its environ; a META replaced without the scheme asks is_secure().
    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    after = http.AfterRecorder(cells)
    rf = RequestFactory()
    replaced = rf.get("/", secure=True)
    replaced.META = {k: v for k, v in replaced.META.items() if k != "wsgi.url_scheme"}
    middleware = _alone(http, after)
    middleware(replaced)  # environ still says https
    middleware(rf.get("/", secure=True))
    middleware(rf.get("/"))
    samples = cells.samples()
    assert samples["requests_by_transport", ("https",)] == 2.0
    assert samples["requests_by_transport", ("http",)] == 1.0


def test_requests_on_two_threads_keep_their_own_labels(twin):
    import threading

    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    after = http.AfterRecorder(cells)
    rf = RequestFactory()
    first_began, second_done = threading.Event(), threading.Event()

    def view(request: Any) -> Any:
        if request.path == "/1":  # the first waits, begun, while the second runs whole
            first_began.set()
            second_done.wait(5)
        after.on_view(request)
        return HttpResponse(b"ok")

    middleware = _alone(http, after, view)

    def second() -> None:
        first_began.wait(5)
        middleware(_resolved(rf.post("/2", secure=True), "second"))
        second_done.set()

    threads = [
        threading.Thread(target=middleware, args=(_resolved(rf.get("/1"), "first"),)),
        threading.Thread(target=second),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    samples = cells.samples()
    assert samples["requests_by_view_transport_method", ("first", "http", "GET")] == 1.0
    assert samples["requests_by_view_transport_method", ("second", "https", "POST")] == 1.0
    assert samples["responses_by_status_view_method", ("200", "first", "GET")] == 1.0
    assert samples["responses_by_status_view_method", ("200", "second", "POST")] == 1.0


def _pair(http: Any, cells: Any, view: Any, *, asynchronous: bool = False) -> Any:
    # Before around After around ``view``, as the middlewares' call runs them (no hooks).
    before, after = _stack(http, cells, view)
    after.async_mode = before.async_mode = asynchronous
    return before


class _Boom(Exception):
    pass


@pytest.mark.parametrize("features", [False, True], ids=["default", "features"])
@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_request_whose_get_response_raises_is_not_kept_alive(twin, asynchronous, features):
    import asyncio
    import gc
    import weakref

    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)

    def sync_view(request: Any) -> Any:
        raise _Boom

    async def async_view(request: Any) -> Any:
        raise _Boom

    before = _pair(http, cells, async_view if asynchronous else sync_view, asynchronous=asynchronous)
    request = _resolved(RequestFactory().get("/boom"), "boom")
    alive = weakref.ref(request)
    installed = _Features(http, defer=True) if features else None  # the deferred path's slot too
    http.set_features(installed)
    try:
        with pytest.raises(_Boom):
            if asynchronous:
                asyncio.run(before(request))
            else:
                before(request)
    finally:
        http.set_features(None)
    del request
    gc.collect()
    assert alive() is None
    samples = cells.samples()
    if not features:  # (the deferred path counts a request once the exclusion is decided)
        assert samples["requests_total", ()] == 1.0
    assert samples.get(("responses_total", ()), 0.0) == 0.0  # nothing recorded of a response


def test_the_async_call_records_around_an_awaited_get_response(twin):
    import asyncio

    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    response = HttpResponse(b"ok")

    async def view(request: Any) -> Any:
        await asyncio.sleep(0)  # suspends: the awaitable is resumed through both middlewares
        return response

    before = _pair(http, cells, view, asynchronous=True)
    request = _resolved(RequestFactory().get("/ok"), "ok")
    assert asyncio.run(before(request)) is response
    samples = cells.samples()
    assert samples["requests_total", ()] == samples["responses_total", ()] == 1.0
    assert samples["requests_latency_by_view_method", ("ok", "GET")] == 1.0
    assert samples["responses_by_status_view_method", ("200", "ok", "GET")] == 1.0


def test_the_middlewares_and_the_async_view_hook_take_every_call_form(twin):
    # The compiled twin has a vectorcall entry for Django's usual calls (one argument; the view
    # hook's four); keywords and wrong counts go through tp_call and behave as a def would. The
    # view hook counts when awaited and its await gives None.
    import asyncio
    import sys

    from asgiref.sync import iscoroutinefunction, markcoroutinefunction

    http, cells_module = twin.http, twin.cells
    cells = Cells(cells_module)
    response = HttpResponse(b"ok")
    before = _pair(http, cells, lambda request: response)
    rf = RequestFactory()
    assert before(_resolved(rf.get("/"), "ok")) is response
    assert before(request=_resolved(rf.get("/"), "ok")) is response
    with pytest.raises(TypeError):
        before()
    with pytest.raises(TypeError):
        before(_resolved(rf.get("/"), "ok"), None)
    view_hook, _ = _pair(http, cells, None, asynchronous=True).get_response._async_hooks()
    if not iscoroutinefunction(view_hook):  # as middleware.py marks it, so Django adds no hop
        view_hook = markcoroutinefunction(view_hook)
    assert iscoroutinefunction(view_hook)

    async def run(*args: Any, **kwargs: Any) -> Any:
        return await view_hook(*args, **kwargs)

    request = _resolved(rf.get("/v"), "v")
    for args, kwargs in (((request,), {}), ((request, None, (), {}), {}), ((), {"request": request})):
        assert asyncio.run(run(*args, **kwargs)) is None
    with pytest.raises(TypeError):
        view_hook(request, None, (), {}, None)
    samples = cells.samples()
    assert samples["requests_total", ()] == samples["responses_total", ()] == 2.0
    assert samples["requests_by_view_transport_method", ("v", "http", "GET")] == 3.0
    if twin.compiled and sys.version_info >= (3, 12):  # subclasses inherit the entry from 3.12
        vectorcall = 1 << 11  # Py_TPFLAGS_HAVE_VECTORCALL
        assert type(before).__flags__ & vectorcall and type(view_hook).__flags__ & vectorcall

    # A subclass's own __call__, in its body or set later, is what Django's call reaches.
    class Own(http.Middleware):
        def __call__(self, request: Any) -> Any:
            return "own"

    class Late(http.Middleware):
        pass

    Late.__call__ = lambda self, request: "late"  # type: ignore[method-assign]
    assert Own()(request) == "own" and Late()(request) == "late"
