"""HTTP middlewares: the cost they add to one request through Django's own handlers.

Every impl serves the same request with Django's default middleware stack (the
one ``startproject`` writes) and a trivial view; the instrumented impls add
``PrometheusBeforeMiddleware`` first and ``PrometheusAfterMiddleware`` last, as
the README tells users to. ``op`` is one whole request: a fresh WSGI environ
through ``WSGIHandler`` (and ``response.close()``, as a WSGI server calls it),
or one ``ASGIHandler`` call run to completion on an event loop.

This module doubles as the URLconf of the benchmark project (``urlpatterns`` is
built on first access, so importing it needs no Django settings).
"""

from __future__ import annotations

import io
from typing import Any

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


def _settings(impl: str) -> dict[str, Any]:
    apps = [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ]
    middleware = list(DEFAULT_MIDDLEWARE)
    if impl != "bare":
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


# Fixed loop counts: the instruction count is the slope over them (see the runner). Every
# label combination is resolved on the first request; a few hundred more reach the steady state.
# An ASGI request costs ten times a WSGI one (an event loop turn, the handler's tasks and
# threads), so it gets a tenth of the counts.
WSGI_COUNTS = (150, 300, 450)
HTTP_WSGI = Case("http_wsgi", _settings, _build_wsgi, warmup=500, counts=WSGI_COUNTS)
HTTP_WSGI_BROWSER = Case("http_wsgi_browser", _settings, _build_wsgi_browser, warmup=500, counts=WSGI_COUNTS)
HTTP_ASGI = Case("http_asgi", _settings, _build_asgi, warmup=200, counts=(15, 30, 45))
CASES = [HTTP_WSGI, HTTP_WSGI_BROWSER, HTTP_ASGI]


class HttpRequestCost:
    """One request through Django's handlers per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.wsgi = prepare(HTTP_WSGI, impl)
        self.wsgi_browser = prepare(HTTP_WSGI_BROWSER, impl)
        self.asgi = prepare(HTTP_ASGI, impl)

    def time_wsgi(self, impl: str) -> None:
        self.wsgi()

    def time_wsgi_browser(self, impl: str) -> None:
        self.wsgi_browser()

    def time_asgi(self, impl: str) -> None:
        self.asgi()

    def peakmem_wsgi_2k(self, impl: str) -> None:
        # Steady-state requests must not grow memory (cells are resolved once).
        for _ in range(2_000):
            self.wsgi()
