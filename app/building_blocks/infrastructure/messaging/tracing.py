"""Traces across the outbox and the broker: the event's trace, not the relay's loop.

An event's headers in the outbox hold the W3C ``traceparent`` of the command that wrote it
(:func:`~app.building_blocks.infrastructure.messaging.envelope.cloud_event_headers`). While spans
are recorded, the relay's publish span continues *that* trace and replaces the header with its own
context; otherwise the header goes out as written (a span per row would cost the relay a quarter
of its throughput for nothing read). The consumer's span continues whichever it finds: one trace
from the HTTP request to the projection. These are
the kit's own spans, not aiokafka's instrumentation, because they must hold for the in-process
transport too and because that instrumentation starts its send span from the relay's current
context — the loop — and appends a second ``traceparent`` to the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage, ReceivedMessage
from app.building_blocks.observability.tracing import tracer

TRACE_HEADERS = ("traceparent", "tracestate")


def start_publish_span(message: OutgoingMessage, *, system: str) -> tuple[Span, OutgoingMessage]:
    """A PRODUCER span under the trace stored in ``message``'s headers, and the message carrying it."""
    parent = propagate.extract(message.headers)
    span = tracer().start_span(
        f"{message.topic} publish",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.destination.name": message.topic,
            "messaging.message.id": message.headers.get("ce_id", ""),
            "messaging.kafka.message.key": message.key,
            "cloudevents.event_type": message.headers.get("ce_type", ""),
        },
    )
    headers = {name: value for name, value in message.headers.items() if name not in TRACE_HEADERS}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return span, replace(message, headers=headers)


def end_publish_span(span: Span, ack: asyncio.Future[Any] | None, error: BaseException | None = None) -> None:
    """End ``span`` with the send's outcome: the broker's acknowledgement, or why it failed."""
    if error is None and ack is not None:
        error = asyncio.CancelledError("the send was abandoned") if ack.cancelled() else ack.exception()
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


@contextlib.contextmanager
def consume_span(message: ReceivedMessage, *, consumer: str, system: str) -> Iterator[Span]:
    """The CONSUMER span for handling ``message``, continuing the trace its headers carry."""
    parent = propagate.extract(message.headers)
    with tracer().start_as_current_span(
        f"{message.topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "process",
            "messaging.destination.name": message.topic,
            "messaging.consumer.group.name": consumer,
            "messaging.destination.partition.id": str(message.partition),
            "messaging.kafka.offset": message.offset,
            "messaging.message.id": message.message_id or "",
            "cloudevents.event_type": message.event_type or "",
        },
    ) as span:
        yield span
