"""Consumers of integration events in the users context.

The service consumes its own user events into an activity log: a projection that shows, per user,
each event once and in order. It exercises the whole path (outbox → relay → broker → inbox) and is
the example to copy for a consumer of another service's events.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.building_blocks.infrastructure.messaging.envelope import ReceivedMessage
from app.building_blocks.infrastructure.messaging.subscriptions import MessageContext
from app.users.integration_events import INTEGRATION_EVENTS
from app.users.persistence.tables import user_activity_table

logger = logging.getLogger("app.users.consumers")

ACTIVITY_CONSUMER = "users.activity-log"
_ENVELOPE_FIELDS = {
    "event_id",
    "occurred_at",
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "event_version",
    "correlation_id",
    "causation_id",
    "source",
    "user_id",
}


async def project_user_activity(message: ReceivedMessage, context: MessageContext) -> None:
    """Record one user event in the activity log (runs inside the inbox's transaction).

    A projection writes its rows straight through ``context.session``; a consumer that changes
    an aggregate sends a command instead (``await context.send(...)``), see
    docs/ADD_A_BOUNDED_CONTEXT.md.

    Unknown event types (a newer version published before this consumer learnt it) are skipped,
    not dead-lettered: nothing is wrong with them. A known type whose payload does not validate
    raises, so it is retried and then dead-lettered.
    """
    event_class = INTEGRATION_EVENTS.get(message.event_type or "")
    if event_class is None:
        logger.info("activity log skips %s (%s)", message.message_id, message.event_type)
        return
    event = event_class.model_validate_json(message.value)
    payload = event.model_dump(mode="json")
    session = context.session
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(user_activity_table)
        .values(
            event_id=str(event.event_id),
            user_id=event.user_id,
            event_type=event.EVENT_TYPE,
            occurred_at=event.occurred_at,
            data={k: v for k, v in payload.items() if k not in _ENVELOPE_FIELDS},
            recorded_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
