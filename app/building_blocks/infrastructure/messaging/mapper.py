"""Explicit mapping from domain events (internal) to integration events (the public contract).

Only mapped domain events leave the service; everything else stays an internal detail. The mapper
stamps each integration event with the source service, the current correlation id and, for work
caused by a consumed message, that message's id as the causation id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.building_blocks.correlation import get_causation_id, get_correlation_id
from app.building_blocks.domain.events import DomainEvent, IntegrationEvent

TDomainEvent = TypeVar("TDomainEvent", bound=DomainEvent)


class IntegrationEventMapper:
    def __init__(self, *, source: str) -> None:
        self.source = source
        self._maps: dict[type[DomainEvent], Callable[[Any], IntegrationEvent]] = {}

    def register(
        self, domain_event: type[TDomainEvent], build: Callable[[TDomainEvent], IntegrationEvent]
    ) -> None:
        self._maps[domain_event] = build

    def map(self, event: DomainEvent) -> IntegrationEvent | None:
        build = self._maps.get(type(event))
        if build is None:
            return None
        integration = build(event)
        return integration.model_copy(
            update={
                "event_id": event.event_id,  # one id end to end: the inbox deduplicates on it
                "occurred_at": event.occurred_at,
                "source": self.source,
                "correlation_id": integration.correlation_id or get_correlation_id(),
                "causation_id": integration.causation_id or get_causation_id(),
            }
        )

    def map_all(self, events: list[DomainEvent]) -> list[IntegrationEvent]:
        return [mapped for event in events if (mapped := self.map(event)) is not None]
