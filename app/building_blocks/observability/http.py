"""HTTP metrics by route template (prometheus-fastapi-instrumentator) and ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info

from app.building_blocks.observability.exemplars import ExemplarFile, multiprocess_registry_with_exemplars
from app.building_blocks.observability.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    LATENCY_BUCKETS,
    multiprocess_dir,
)


def sampled_trace_id() -> str | None:
    """The active span's trace id when it is sampled: an exemplar must point at a stored trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return format(context.trace_id, "032x")
    return None


def instrument_http(app: FastAPI, *, excluded_handlers: Sequence[str] = ("/metrics",)) -> None:
    """Count and time every request by method, route template and status code.

    Unmatched paths count as handler ``none``: a scanner's random URLs cannot grow the series.
    The latency histogram carries the request's trace id as an exemplar, natively in one process
    and through :class:`ExemplarFile` under gunicorn.
    """
    directory = multiprocess_dir()
    shared = (
        ExemplarFile(directory, HTTP_REQUEST_DURATION._name, LATENCY_BUCKETS)
        if directory is not None
        else None
    )

    def observe(info: Info) -> None:
        method, handler = info.method, info.modified_handler
        HTTP_REQUESTS.labels(method, handler, info.modified_status).inc()
        duration = info.modified_duration
        trace_id = sampled_trace_id()
        child = HTTP_REQUEST_DURATION.labels(method, handler)
        if trace_id is None:
            child.observe(duration)
        elif shared is None:
            child.observe(duration, exemplar={"trace_id": trace_id})
        else:
            child.observe(duration)
            shared.record({"method": method, "handler": handler}, duration, trace_id)

    Instrumentator(
        should_group_status_codes=False,
        should_ignore_untemplated=False,
        should_group_untemplated=True,
        excluded_handlers=list(excluded_handlers),
    ).add(observe).instrument(app)


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
