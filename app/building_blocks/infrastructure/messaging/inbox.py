"""The idempotent inbox: one row per (message id, consumer) already handled.

Claiming a message inserts its row in the handler's own transaction with ``ON CONFLICT DO
NOTHING``: the handler runs only if the row is new, and if the handler fails the rollback removes
the row too, so a failed message is never mistaken for a handled one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.building_blocks.infrastructure.messaging.tables import inbox_table


async def claim(session: AsyncSession, message_id: str, consumer: str) -> bool:
    """Record the message as handled by ``consumer``; ``False`` when it already was."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(inbox_table)
        .values(message_id=message_id, consumer=consumer, processed_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["message_id", "consumer"])
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount == 1


async def purge(session: AsyncSession, consumer: str, older_than: timedelta) -> int:
    """Forget handled ids after the retention window (redeliveries come within minutes)."""
    cutoff = datetime.now(UTC) - older_than
    result = await session.execute(
        delete(inbox_table).where(inbox_table.c.consumer == consumer, inbox_table.c.processed_at < cutoff)
    )
    return cast(CursorResult[Any], result).rowcount or 0
