"""A span for requests that carry a W3C ``traceparent``, when OpenTelemetry's SDK is installed.

Stands in for the OpenTelemetry instrumentation a real site runs (opentelemetry-instrumentation-
django): with a span current, PROMETHEUS_EXEMPLARS puts its trace_id on the latency histograms.
"""

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider

tracer = TracerProvider().get_tracer("demo")


class TraceparentMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "traceparent" not in request.headers:
            return self.get_response(request)
        context = extract({"traceparent": request.headers["traceparent"]})
        with tracer.start_as_current_span(request.path, context=context, kind=trace.SpanKind.SERVER):
            return self.get_response(request)
