"""HTTP metrics by route template, with trace exemplars, and ``GET /metrics``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from opentelemetry import propagate, trace
from opentelemetry.context import attach, detach
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.building_blocks.observability.exemplars import ExemplarFile, multiprocess_registry_with_exemplars
from app.building_blocks.observability.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    LATENCY_BUCKETS,
    multiprocess_dir,
)
from app.building_blocks.observability.tracing import recording, tracer

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def sampled_trace_id() -> str | None:
    """The active span's trace id when it is sampled: an exemplar must point at a stored trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return format(context.trace_id, "032x")
    return None


class HttpMetricsMiddleware:
    """Counts and times every request by method, route template and status code (pure ASGI).

    The route template is the one the router matched, read from the scope once the app has
    answered; nothing matches a second time. Unmatched paths count as handler ``none``, so a
    scanner's random URLs cannot grow the series. The latency histogram carries the request's
    trace id as an exemplar when its span is recorded: natively in one process, through
    :class:`ExemplarFile` under gunicorn.

    prometheus-fastapi-instrumentator does the same job by matching the request against every
    route twice before calling the app: measured on this service, 60 µs of CPU a request against
    under 10 µs here (docs/OBSERVABILITY.md).
    """

    def __init__(self, app: ASGIApp, *, excluded_paths: Sequence[str] = ("/metrics",)) -> None:
        self.app = app
        self.excluded = frozenset(excluded_paths)
        directory = multiprocess_dir()
        self.shared = (
            ExemplarFile(directory, HTTP_REQUEST_DURATION._name, LATENCY_BUCKETS)
            if directory is not None
            else None
        )
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500  # what the client gets when the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            # Under a Mount the matched route's path is relative to the mount's prefix.
            handler = scope.get("root_path", "")[len(root_path) :] + template if template else "none"
            self._observe(scope["method"], handler, status, time.perf_counter() - started)

    def _observe(self, method: str, handler: str, status: int, duration: float) -> None:
        if method not in HTTP_METHODS:  # a client's made-up method must not make a series
            method = "other"
        key = (method, handler, status)
        series = self._series.get(key)
        if series is None:
            series = (
                HTTP_REQUESTS.labels(method, handler, str(status)),
                HTTP_REQUEST_DURATION.labels(method, handler),
            )
            self._series[key] = series
        requests, latency = series
        requests.inc()
        trace_id = sampled_trace_id()
        if trace_id is None:
            latency.observe(duration)
        elif self.shared is None:
            latency.observe(duration, exemplar={"trace_id": trace_id})
        else:
            latency.observe(duration)
            self.shared.record({"method": method, "handler": handler}, duration, trace_id)


class TraceIdsMiddleware:
    """A W3C trace id for every request while spans go nowhere, at a fraction of a span's cost.

    With no exporter a span is never read, yet its ids are: in log lines, ProblemDetails and the
    ``traceparent`` of what the request causes. Then this middleware opens a non-recording
    server span (continuing the caller's ``traceparent``) and FastAPI's own telemetry stands
    aside (:func:`~app.building_blocks.observability.setup.request_telemetry`). It reads the
    propagation headers only when the request carries one, and makes the span current without
    ``use_span``'s generator: measured, about 30 µs a request (half of it the SDK's
    ``start_span``) instead of FastAPI's 45 µs. Once spans are recorded it does nothing and
    FastAPI's telemetry makes the real server span.
    """

    def __init__(self, app: ASGIApp, *, excluded: Callable[[Scope], bool]) -> None:
        self.app = app
        self.excluded = excluded
        self.propagated = frozenset(field.lower().encode() for field in propagate.get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or recording() or self.excluded(scope):
            await self.app(scope, receive, send)
            return
        parent = (
            propagate.extract(Headers(scope=scope))
            if any(name in self.propagated for name, _ in scope["headers"])
            else None
        )
        span = tracer().start_span(scope["method"], context=parent, kind=SpanKind.SERVER)
        token = attach(trace.set_span_in_context(span))  # the caller's baggage is not passed on
        try:
            await self.app(scope, receive, send)
        finally:
            detach(token)  # a non-recording span: ending it would do nothing


def instrument_http(app: FastAPI, *, excluded_paths: Sequence[str] = ("/metrics",)) -> None:
    """Add :class:`HttpMetricsMiddleware`, outermost of the app's middleware."""
    app.add_middleware(HttpMetricsMiddleware, excluded_paths=excluded_paths)


def scrape_registry() -> CollectorRegistry:
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    return multiprocess_registry_with_exemplars(directory, HTTP_REQUEST_DURATION)


def add_metrics_endpoint(app: FastAPI, path: str = "/metrics") -> None:
    """Prometheus text, or OpenMetrics (with exemplars) when the scraper asks for it."""

    @app.get(path, include_in_schema=False)
    def metrics(request: Request) -> Response:  # sync: reading the worker files runs in a thread
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(scrape_registry()), media_type=content_type)
