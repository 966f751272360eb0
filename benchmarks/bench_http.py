"""HTTP middlewares: the cost they add to one request through Django's own handlers.

Every impl serves the same request with Django's default middleware stack (the
one ``startproject`` writes) and a trivial view; the instrumented impls add
``PrometheusBeforeMiddleware`` first and ``PrometheusAfterMiddleware`` last, as
the README tells users to. ``op`` is one whole request: a fresh WSGI environ
through ``WSGIHandler`` (and ``response.close()``, as a WSGI server calls it),
or one ``ASGIHandler`` call run to completion on an event loop.

``http_asgi`` is the ASGI request end to end, and its counts are mostly the
handler's scheduling: Django sends ``request_started``/``request_finished``
and runs every sync-only hook through ``sync_to_async``, so each request hops
threads, and what a hop costs depends on when the threads wake. ``http_asgi_chain``
is the same request through the same async middleware chain
(``load_middleware(is_async=True)``), deterministic: one coroutine awaits the
chain K times on one loop run (an async case, see ``Case.is_async``), each
time with a fresh ``ASGIRequest`` from a fixed scope and ``response.close()``
after, and ``sync_to_async`` calls run inline, on the loop's thread, through
an executor that runs what it is given when it is given it (asgiref's
``ThreadSensitiveContext(executor=...)``, entered per request): no thread
pool, no wake-up is counted. The hops themselves are left out for every impl
alike, so upstream's added cost here is lower than in a real ASGI server (its
middlewares are sync-only and hop twice each), and ours is not flattered.

This module doubles as the URLconf of the benchmark project (``urlpatterns`` is
built on first access, so importing it needs no Django settings).
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import Executor, Future
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

from ._harness import IMPLS, Case, Op, prepare

DEFAULT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Fixed, well-formed CSRF and session cookies: CsrfViewMiddleware accepts the secret as it is
# (a missing or malformed one makes it draw a random new one and set the cookie), so every
# request is the same bytes and takes the same path; the session is never loaded (the view
# does not touch it).
CSRF_COOKIE = "csrftoken=bEnChMaRkS0nLyCsRfSeCrEt01234567"
SESSION_COOKIE = "sessionid=benchmarksonlysessionkey0123456789a"

# What a browser sends to a page it has visited before.
BROWSER_HEADERS = {
    "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd",
    "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9,de;q=0.8",
    "HTTP_CACHE_CONTROL": "max-age=0",
    "HTTP_CONNECTION": "keep-alive",
    "HTTP_COOKIE": f"theme=dark; _ga=GA1.1.123456789.1700000000; consent=yes; {CSRF_COOKIE}; "
    f"{SESSION_COOKIE}",
    "HTTP_DNT": "1",
    "HTTP_PRIORITY": "u=0, i",
    "HTTP_SEC_FETCH_DEST": "document",
    "HTTP_SEC_FETCH_MODE": "navigate",
    "HTTP_SEC_FETCH_SITE": "none",
    "HTTP_SEC_FETCH_USER": "?1",
    "HTTP_UPGRADE_INSECURE_REQUESTS": "1",
    "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
}


def _settings(impl: str, floor: bool = False) -> dict[str, Any]:
    apps = [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ]
    middleware = list(DEFAULT_MIDDLEWARE)
    if impl == "bare" and floor:
        floor_pair = f"{__name__}.pass_through_middleware"
        middleware = [floor_pair, *middleware, floor_pair]
    elif impl != "bare":
        apps.append("django_prometheus")
        middleware = [
            "django_prometheus.middleware.PrometheusBeforeMiddleware",
            *middleware,
            "django_prometheus.middleware.PrometheusAfterMiddleware",
        ]
    return {
        "DEBUG": False,
        "SECRET_KEY": "benchmarks-only",
        "ALLOWED_HOSTS": ["*"],
        "USE_TZ": True,
        "ROOT_URLCONF": __name__,
        "INSTALLED_APPS": apps,
        "MIDDLEWARE": middleware,
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        "LOGGING_CONFIG": None,
    }


def _floor_settings(impl: str) -> dict[str, Any]:
    return _settings(impl, floor=True)


@sync_and_async_middleware
def pass_through_middleware(get_response: Any) -> Any:
    """A middleware that does nothing, in the shape Django's documentation gives one for both modes.

    Sync, it returns what ``get_response`` returns; async, it awaits it (what any middleware that
    looks at the response has to do). The ``*_passthrough`` cases' ``bare`` puts two of these where
    ours go, so their bare minus the plain case's bare, in one run, is what two middlewares cost
    Django before they do anything (its ``convert_exception_to_response`` wrapper and the call).
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: Any) -> Any:
            return await get_response(request)

    else:

        def middleware(request: Any) -> Any:
            return get_response(request)

    return middleware


_urlpatterns: list[Any] | None = None


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` only once settings exist; build it then.
    global _urlpatterns
    if name != "urlpatterns":
        raise AttributeError(name)
    if _urlpatterns is None:
        from django.http import HttpResponse
        from django.urls import path

        def hello(request: Any) -> Any:
            return HttpResponse(b"Hello, world.")

        async def ahello(request: Any) -> Any:
            return HttpResponse(b"Hello, world.")

        _urlpatterns = [path("", hello, name="hello"), path("async", ahello, name="ahello")]
    return _urlpatterns


def _wsgi_op(extra: dict[str, str]) -> Op:
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **extra,
    }

    answers: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        if not answers:
            answers.append((status, headers))

    def op() -> None:
        response = handler(dict(environ), start_response)
        response.close()

    op()  # fail here, not in the timing loop, if the project is broken
    status, headers = answers[0]
    if not status.startswith("200") or any(name.lower() == "set-cookie" for name, _ in headers):
        # A Set-Cookie means a middleware drew something random: requests would differ.
        raise RuntimeError(f"the WSGI benchmark request answered {status} {headers}")
    return op


def _build_wsgi(impl: str) -> Op:
    return _wsgi_op({})


def _build_wsgi_browser(impl: str) -> Op:
    return _wsgi_op(BROWSER_HEADERS)


def _build_asgi(impl: str) -> Op:
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    handler = ASGIHandler()
    loop = asyncio.new_event_loop()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/async",
        "raw_path": b"/async",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    body = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def request() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return body
            # After the body a client just waits; Django cancels this when it is done.
            await loop.create_future()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await handler(dict(scope), receive, send)

    def op() -> None:
        loop.run_until_complete(request())

    op()
    if statuses != [200]:
        raise RuntimeError(f"the ASGI benchmark request answered {statuses}")
    statuses.clear()
    return op


class _InlineExecutor(Executor):
    """Runs each call in ``submit``, on the caller's thread: one call at a time, as asgiref requires."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as a worker thread would
            future.set_exception(exc)
        return future


ASGI_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/async",
    "raw_path": b"/async",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"testserver")],
    "client": ("127.0.0.1", 50000),
    "server": ("testserver", 80),
}


def _build_asgi_chain(impl: str) -> Any:
    import asyncio

    from asgiref.sync import ThreadSensitiveContext
    from django.core.handlers.asgi import ASGIRequest
    from django.core.handlers.base import BaseHandler
    from django.urls import set_script_prefix

    handler = BaseHandler()
    handler.load_middleware(is_async=True)  # settings.MIDDLEWARE: bare's, or ours/upstream's around it
    chain = handler._middleware_chain
    set_script_prefix("/")  # what ASGIHandler sets per request, from the (fixed) scope
    inline = _InlineExecutor()
    answers: list[Any] = []

    async def aop() -> None:
        request = ASGIRequest(dict(ASGI_SCOPE), io.BytesIO(b""))
        async with ThreadSensitiveContext(executor=inline):
            response = await chain(request)
        response.close()
        if not answers:
            answers.append(response)

    asyncio.run(aop())  # fail here, not in the timing loop, if the project is broken
    response = answers[0]
    if response.status_code != 200 or response.cookies:
        raise RuntimeError(
            f"the ASGI chain benchmark request answered {response.status_code} {response.cookies}"
        )
    return aop


# Fixed loop counts: the instruction count is the slope over them (see the runner). Every
# label combination is resolved on the first request; a few hundred more reach the steady state.
# An ASGI request costs ten times a WSGI one (an event loop turn, the handler's tasks and
# threads), so it gets a tenth of the counts.
WSGI_COUNTS = (150, 300, 450)
HTTP_WSGI = Case("http_wsgi", _settings, _build_wsgi, warmup=500, counts=WSGI_COUNTS)
HTTP_WSGI_BROWSER = Case("http_wsgi_browser", _settings, _build_wsgi_browser, warmup=500, counts=WSGI_COUNTS)
HTTP_ASGI = Case("http_asgi", _settings, _build_asgi, warmup=200, counts=(15, 30, 45))
# No thread hop per request: it costs about what a WSGI request costs.
HTTP_ASGI_CHAIN = Case(
    "http_asgi_chain", _settings, _build_asgi_chain, warmup=500, counts=WSGI_COUNTS, is_async=True
)
# The floor: the same requests, where ``bare`` has two pass-through middlewares in our places
# (every other impl is as above). This case's bare minus http_wsgi's bare, in one run, is what
# any two middlewares cost; its "added" is what ours cost beyond that.
HTTP_WSGI_PASSTHROUGH = Case(
    "http_wsgi_passthrough", _floor_settings, _build_wsgi, warmup=500, counts=WSGI_COUNTS
)
HTTP_ASGI_CHAIN_PASSTHROUGH = Case(
    "http_asgi_chain_passthrough",
    _floor_settings,
    _build_asgi_chain,
    warmup=500,
    counts=WSGI_COUNTS,
    is_async=True,
)
CASES = [
    HTTP_WSGI,
    HTTP_WSGI_BROWSER,
    HTTP_ASGI,
    HTTP_ASGI_CHAIN,
    HTTP_WSGI_PASSTHROUGH,
    HTTP_ASGI_CHAIN_PASSTHROUGH,
]


class HttpRequestCost:
    """One request through Django's handlers per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.wsgi = prepare(HTTP_WSGI, impl)
        self.wsgi_browser = prepare(HTTP_WSGI_BROWSER, impl)
        self.asgi = prepare(HTTP_ASGI, impl)
        self.asgi_chain = prepare(HTTP_ASGI_CHAIN, impl)
        self.loop = asyncio.new_event_loop()

    def time_wsgi(self, impl: str) -> None:
        self.wsgi()

    def time_wsgi_browser(self, impl: str) -> None:
        self.wsgi_browser()

    def time_asgi(self, impl: str) -> None:
        self.asgi()

    def time_asgi_chain(self, impl: str) -> None:
        # One loop run per call here (asv times a function); the runner awaits K in one run.
        self.loop.run_until_complete(self.asgi_chain())

    def peakmem_wsgi_2k(self, impl: str) -> None:
        # Steady-state requests must not grow memory (cells are resolved once).
        for _ in range(2_000):
            self.wsgi()
