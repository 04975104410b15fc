"""Read the active OpenTelemetry span without depending on how tracing was set up."""

from __future__ import annotations

from opentelemetry import trace


def current_trace_id() -> str | None:
    """The W3C trace id (32 hex digits) of the active span, or ``None`` when nothing traces."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_span_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else None
