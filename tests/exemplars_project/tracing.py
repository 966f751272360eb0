"""A request span from a real OpenTelemetry SDK tracer, chosen by the ``X-Trace`` request header.

``X-Trace: recording``: a sampled, recording span (its ids come back in ``X-Trace-Id`` /
``X-Span-Id``); ``X-Trace: unsampled``: the span of an ``ALWAYS_OFF`` tracer (non-recording);
anything else: no span at all.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

TRACERS = {
    "recording": TracerProvider(sampler=ALWAYS_ON).get_tracer("tests.exemplars"),
    "unsampled": TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests.exemplars"),
}


def _tag(response, span):
    ctx = span.get_span_context()
    response["X-Trace-Id"] = format(ctx.trace_id, "032x")
    response["X-Span-Id"] = format(ctx.span_id, "016x")
    response["X-Recording"] = str(span.is_recording())
    return response


class TracingMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        tracer = TRACERS.get(request.headers.get("x-trace", ""))
        if tracer is None:
            return self.get_response(request)
        with tracer.start_as_current_span("request") as span:
            return _tag(self.get_response(request), span)

    async def _acall(self, request):
        tracer = TRACERS.get(request.headers.get("x-trace", ""))
        if tracer is None:
            return await self.get_response(request)
        with tracer.start_as_current_span("request") as span:
            return _tag(await self.get_response(request), span)
