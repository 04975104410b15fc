"""Observability building blocks: JSON logs with trace correlation, tracing helpers."""

from app.building_blocks.observability.logging import configure_logging
from app.building_blocks.observability.tracing import current_span_id, current_trace_id

__all__ = ["configure_logging", "current_span_id", "current_trace_id"]
