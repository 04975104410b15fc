"""The outbox's gauges, sampled by the process that runs the relay."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging.outbox_admin import outbox_backlog
from app.building_blocks.observability.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PARKED


async def sample_outbox(engine: AsyncEngine) -> None:
    backlog = await outbox_backlog(engine)
    OUTBOX_BACKLOG.set(backlog.pending)
    OUTBOX_PARKED.set(backlog.parked)
    age = (datetime.now(UTC) - backlog.oldest).total_seconds() if backlog.oldest is not None else 0.0
    OUTBOX_OLDEST_AGE.set(max(0.0, age))
