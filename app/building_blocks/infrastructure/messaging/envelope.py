"""Integration events on the wire: CloudEvents 1.0, Kafka protocol binding, binary content mode.

The record value is the event's JSON; the attributes travel as headers (``ce_id``, ``ce_type``,
``ce_source``, ``ce_time``, ``ce_specversion``, ``ce_subject``, ``content-type``) together with the
W3C ``traceparent``/``tracestate`` of the code that raised the event and our correlation ids as
CloudEvents extensions (``ce_correlationid``, ``ce_causationid``). The key is the aggregate id, so
one aggregate's events share a partition and keep their order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from opentelemetry import propagate

from app.building_blocks.domain.events import IntegrationEvent

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class OutgoingMessage:
    """One record to produce. ``headers`` are text; transports encode them."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedMessage:
    """One record as consumed, with where it came from (for commits and dead letters)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]

    @property
    def message_id(self) -> str | None:
        return self.headers.get("ce_id")

    @property
    def event_type(self) -> str | None:
        return self.headers.get("ce_type")

    def json(self) -> dict[str, Any]:
        data = json.loads(self.value)
        if not isinstance(data, dict):
            raise ValueError("the message value is not a JSON object")
        return data


def cloud_event_headers(event: IntegrationEvent, *, source: str) -> dict[str, str]:
    headers = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": str(event.event_id),
        "ce_type": event.versioned_type(),
        "ce_source": source,
        "ce_time": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "ce_subject": event.aggregate_id,
        "content-type": CONTENT_TYPE,
    }
    if event.correlation_id:
        headers["ce_correlationid"] = event.correlation_id
    if event.causation_id:
        headers["ce_causationid"] = event.causation_id
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # traceparent (and tracestate) when a span is active
    headers.update(carrier)
    return headers


def encode_value(event: IntegrationEvent) -> bytes:
    return event.model_dump_json().encode()


def encode_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def decode_headers(headers: Any) -> dict[str, str]:
    """Kafka headers are (name, bytes) pairs; undecodable values are kept with replacement marks."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in headers or ()}
