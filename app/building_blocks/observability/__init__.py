"""Observability building blocks: traces, JSON logs with trace ids, Prometheus metrics."""

from app.building_blocks.observability.behaviors import ObservabilityBehavior
from app.building_blocks.observability.config import ObservabilityConfig
from app.building_blocks.observability.logging import configure_logging
from app.building_blocks.observability.setup import (
    instrument_app,
    instrument_mediator,
    serve_metrics,
    setup_observability,
    setup_process_observability,
)
from app.building_blocks.observability.tracing import current_span_id, current_trace_id

__all__ = [
    "ObservabilityBehavior",
    "ObservabilityConfig",
    "configure_logging",
    "current_span_id",
    "current_trace_id",
    "instrument_app",
    "instrument_mediator",
    "serve_metrics",
    "setup_observability",
    "setup_process_observability",
]
