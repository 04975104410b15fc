"""Spans of this test process, kept in memory (the process's tracer provider is the app's)."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.building_blocks.observability.tracing import configure_tracing, record_spans


@pytest.fixture(scope="session")
def span_memory() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    configure_tracing(service_name="user-service")
    record_spans(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(span_memory: InMemorySpanExporter) -> InMemorySpanExporter:
    span_memory.clear()
    return span_memory


def spans_of(memory: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [span for span in memory.get_finished_spans() if span.context.trace_id == trace_id]


def wait_for_spans(
    memory: InMemorySpanExporter, trace_id: int, *names: str, timeout: float = 15.0
) -> list[ReadableSpan]:
    """The trace's finished spans once every name in ``names`` is among them."""
    deadline = time.monotonic() + timeout
    while True:
        found = spans_of(memory, trace_id)
        if set(names) <= {span.name for span in found}:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"spans {sorted(names)} not all in {sorted(span.name for span in found)}")
        time.sleep(0.05)
