"""``setup_observability(app, ObservabilityConfig(...))``: traces, logs and metrics in one call.

For the API: the HTTP server span of every request (FastAPI's own, see :func:`request_telemetry`), SQL spans
(asyncpg's: it sees both the SQLAlchemy path and the kit's direct driver path, which
SQLAlchemy's events would miss), Redis calls, a span and metrics per
``mediator.send()`` of the mediator on ``app.state.mediator``, HTTP metrics by route template
with trace-id exemplars, and ``GET /metrics``. A process without an app (the worker) calls
:func:`setup_process_observability` and serves its metrics with :func:`serve_metrics`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from app.building_blocks.application.mediator import Mediator
from app.building_blocks.observability.behaviors import ObservabilityBehavior
from app.building_blocks.observability.config import ObservabilityConfig
from app.building_blocks.observability.http import TraceIdsMiddleware, add_metrics_endpoint, instrument_http
from app.building_blocks.observability.log_export import configure_log_export
from app.building_blocks.observability.logging import (
    NOISY_LIBRARIES,
    ContextFilter,
    RepeatFilter,
    configure_logging,
)
from app.building_blocks.observability.metrics import INFO
from app.building_blocks.observability.tracing import configure_tracing, recording

logger = logging.getLogger("app.observability")


def setup_observability(app: FastAPI, config: ObservabilityConfig) -> None:
    setup_process_observability(config)
    instrument_app(app, config)


def instrument_app(app: FastAPI, config: ObservabilityConfig) -> None:
    """The app's part of :func:`setup_observability`, for a process already set up."""
    if config.metrics_enabled:
        instrument_http(app, excluded_paths=(config.metrics_path,))
        add_metrics_endpoint(app, config.metrics_path)
    if config.tracing_enabled:
        app.add_middleware(TraceIdsMiddleware, excluded=untraced_paths(config))
    mediator = getattr(app.state, "mediator", None)
    if isinstance(mediator, Mediator):
        instrument_mediator(mediator)


def request_telemetry(config: ObservabilityConfig) -> TelemetryConfig:
    """``FastAPI(telemetry=...)``: FastAPI's own server span per request, and nothing else of it.

    FastAPI makes the request's span itself once a tracer provider is installed (continuing the
    caller's ``traceparent``, named after the route template), so no instrumentation package is
    needed. Its per-operation spans (dependencies, endpoint, serialization) would triple the
    spans of every request; its metrics and logs would duplicate the kit's Prometheus series and
    JSON lines. Probes and the scrape are not traced.
    """
    untraced = untraced_paths(config)

    def exclude(scope: MutableMapping[str, Any]) -> bool:
        # While no span is recorded, TraceIdsMiddleware gives the request its ids, for less.
        return not recording() or untraced(scope)

    return {
        "tracing": config.tracing_enabled,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "exclude": exclude,
    }


def untraced_paths(config: ObservabilityConfig) -> Callable[[MutableMapping[str, Any]], bool]:
    """Whether a request's path is one of ``traces_excluded_urls`` (regular expressions)."""
    excluded = [re.compile(pattern) for pattern in config.traces_excluded_urls.split(",") if pattern]

    def untraced(scope: MutableMapping[str, Any]) -> bool:
        path = str(scope.get("path", ""))
        return any(pattern.search(path) for pattern in excluded)

    return untraced


def setup_process_observability(config: ObservabilityConfig) -> None:
    """What every process needs: logs, the tracer provider and the libraries' instrumentation."""
    if config.logging_enabled:
        configure_logging(
            service=config.service_name,
            level=config.log_level,
            json=config.log_json,
            access_log=config.access_log,
        )
        configure_log_export(
            service_name=config.service_name,
            service_version=config.service_version,
            level=config.log_level,
            filters=(ContextFilter(config.service_name), RepeatFilter(loggers=NOISY_LIBRARIES)),
        )
    if config.tracing_enabled:
        configure_tracing(
            service_name=config.service_name,
            service_version=config.service_version,
            export=config.span_export,
        )
    if config.metrics_enabled:
        INFO.labels(config.service_name, config.service_version).set(1)


def instrument_mediator(mediator: Mediator[Any]) -> None:
    """Trace and measure every ``send()``: outermost, so the span holds the transaction's SQL."""
    if not any(isinstance(behavior, ObservabilityBehavior) for behavior in mediator.behaviors):
        mediator.add_behavior(ObservabilityBehavior(), outermost=True)


def serve_metrics(host: str, port: int) -> bool:
    """Serve this process's registry (OpenMetrics when asked) on ``host:port``; ``False`` when
    the port is taken, which is logged and costs only the metrics, never the process."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as error:
        logger.warning(
            "metrics: cannot serve on %s:%d (%s); this process's metrics are not scraped", host, port, error
        )
        return False
    logger.info("metrics on http://%s:%d/metrics", host, port)
    return True
