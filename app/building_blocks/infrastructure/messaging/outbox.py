"""The transactional outbox: integration events stored with the change that raised them.

:class:`OutboxWriter` is a commit hook of the unit of work: inside the transaction it maps the
committed domain events to integration events and inserts one ``outbox`` row each. On
PostgreSQL the insert's trigger (migration 0006) sends a ``NOTIFY`` on :data:`NOTIFY_CHANNEL`,
delivered only if the transaction commits, which wakes the relay at once without a round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert

from app.building_blocks.domain.events import DomainEvent, IntegrationEvent
from app.building_blocks.infrastructure.messaging.envelope import (
    cloud_event_headers,
    encode_value,
)
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.tables import outbox_table
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.persistence.compiled_statements import CompiledWrite
from app.building_blocks.infrastructure.persistence.database import DbSession

NOTIFY_CHANNEL = "outbox"  # the channel migration 0006's trigger notifies
_INSERT = CompiledWrite(insert(outbox_table))  # compiled once; asyncpg's short path in a unit of work


def outbox_row(event: IntegrationEvent, *, topic: str, source: str) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "event_type": event.versioned_type(),
        "topic": topic,
        "payload": encode_value(event).decode(),
        "headers": json.dumps(
            cloud_event_headers(event, source=event.source or source), separators=(",", ":")
        ),
        "occurred_at": event.occurred_at,
    }


async def store_in_outbox(session: DbSession, rows: list[dict[str, Any]]) -> None:
    await _INSERT.execute_many(session, rows)


class OutboxWriter:
    """Commit hook: domain events → integration events → outbox rows, in the same transaction."""

    def __init__(
        self,
        mapper: IntegrationEventMapper,
        topics: TopicRouter,
        *,
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        self.mapper = mapper
        self.topics = topics
        self._on_committed = on_committed
        self.written = 0

    async def before_commit(self, session: DbSession, events: list[DomainEvent]) -> None:
        rows = [
            outbox_row(event, topic=self.topics(event), source=self.mapper.source)
            for event in self.mapper.map_all(events)
        ]
        await store_in_outbox(session, rows)
        self.written += len(rows)

    def after_commit(self) -> None:
        """Wake a relay in this process (the embedded mode has no NOTIFY)."""
        if self._on_committed is not None:
            self._on_committed()
