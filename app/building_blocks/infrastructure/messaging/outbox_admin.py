"""What an operator does about parked outbox rows (``python -m app.worker outbox ...``).

The relay parks a row the transport refuses for good (too large, invalid topic, not authorised,
not serialisable) or that failed ``OUTBOX_MAX_ATTEMPTS`` times, and parks the later rows of its
aggregate behind it, so the aggregate's order holds while every other aggregate flows on. The
earliest parked row of an aggregate is its *cause*; the others *wait* behind it.

- ``list_parked``: each cause with its error and how many rows wait behind it;
- ``retry_parked``: once the cause is fixed, release the aggregate: the cause and the rows behind
  it go out again, in order;
- ``discard_parked``: give up the cause (a reason is required and logged with the event), and
  release the rows behind it. The discarded row stays, marked published with the reason as its
  ``last_error``, until the retention purge.
- ``outbox_status``: counts for a readiness detail; ``outbox_backlog``: the relay's gauges.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.building_blocks.infrastructure.messaging.outbox import NOTIFY_CHANNEL
from app.building_blocks.infrastructure.messaging.tables import outbox_table

logger = logging.getLogger("app.messaging.outbox")

_o = outbox_table.c
_PARKED = and_(_o.published_at.is_(None), _o.parked_at.is_not(None))  # ix_outbox_parked


class ParkedRowError(LookupError):
    """The id names no parked row, or one that waits behind another (act on that one)."""


@dataclass(frozen=True)
class ParkedRow:
    event_id: uuid.UUID
    position: int
    aggregate_type: str
    aggregate_id: str
    event_type: str
    topic: str
    attempts: int
    last_error: str | None
    parked_at: datetime
    waiting: int  # later rows of the aggregate parked behind this one


@dataclass(frozen=True)
class OutboxStatus:
    parked: int  # aggregates stopped by a parked row
    waiting: int  # rows parked behind those
    pending: int | None = None  # unpublished rows that are not parked (when asked for)


async def list_parked(engine: AsyncEngine) -> list[ParkedRow]:
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    _o.id,
                    _o.position,
                    _o.aggregate_type,
                    _o.aggregate_id,
                    _o.event_type,
                    _o.topic,
                    _o.attempts,
                    _o.last_error,
                    _o.parked_at,
                )
                .where(_PARKED)
                .order_by(_o.position)
            )
        ).all()
    causes: dict[tuple[str, str], ParkedRow] = {}
    waiting: dict[tuple[str, str], int] = {}
    for row in rows:
        aggregate = (row.aggregate_type, row.aggregate_id)
        if aggregate in causes:
            waiting[aggregate] = waiting.get(aggregate, 0) + 1
            continue
        causes[aggregate] = _parked_row(row)
    return [replace(cause, waiting=waiting.get(aggregate, 0)) for aggregate, cause in causes.items()]


async def outbox_status(engine: AsyncEngine, *, with_pending: bool = False) -> OutboxStatus:
    """Parked aggregates and the rows waiting behind them (both come from the tiny parked
    index); ``with_pending`` also counts the backlog, which costs as much as the backlog is long."""
    async with engine.connect() as connection:
        parked, rows = (
            await connection.execute(
                select(
                    func.count(func.distinct(_o.aggregate_type + ":" + _o.aggregate_id)), func.count()
                ).where(_PARKED)
            )
        ).one()
        pending = None
        if with_pending:
            pending = (
                await connection.execute(
                    select(func.count()).where(
                        _o.published_at.is_(None), _o.parked_at.is_(None), _o.position > 0
                    )
                )
            ).scalar_one()
    return OutboxStatus(parked=int(parked), waiting=int(rows) - int(parked), pending=pending)


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int  # unpublished rows that are not parked
    oldest: datetime | None  # when the oldest of them was written
    parked: int  # parked rows, causes and the rows waiting behind them


async def outbox_backlog(engine: AsyncEngine) -> OutboxBacklog:
    """The relay's gauges: how much waits, since when, and how much is set aside."""
    async with engine.connect() as connection:
        pending, oldest = (
            await connection.execute(
                select(func.count(), func.min(_o.occurred_at)).where(
                    _o.published_at.is_(None), _o.parked_at.is_(None), _o.position > 0
                )
            )
        ).one()
        parked = (await connection.execute(select(func.count()).where(_PARKED))).scalar_one()
    return OutboxBacklog(pending=int(pending), oldest=oldest, parked=int(parked))


async def retry_parked(engine: AsyncEngine, event_id: uuid.UUID) -> int:
    """Release the parked row ``event_id`` and the rows behind it; how many rows go out again."""
    async with engine.begin() as connection:
        cause = await _cause(connection, event_id)
        released = await _release(connection, cause, reset=True)
        await _wake_relay(connection)
    logger.info(
        "outbox: retrying parked event %s of %s %s (%d rows released)",
        event_id,
        cause.aggregate_type,
        cause.aggregate_id,
        released,
    )
    return released


async def discard_parked(engine: AsyncEngine, event_id: uuid.UUID, reason: str) -> int:
    """Give up the parked row ``event_id`` for ``reason``; release the rows behind it (their count)."""
    reason = reason.strip()
    if not reason:
        raise ValueError("discarding an event needs a reason (it is logged with the event)")
    async with engine.begin() as connection:
        cause = await _cause(connection, event_id)
        await connection.execute(
            update(outbox_table)
            .where(_o.position == cause.position)
            .values(published_at=datetime.now(UTC), last_error=f"discarded: {reason}"[:2000])
        )
        released = await _release(connection, cause, reset=False)
        await _wake_relay(connection)
    logger.warning(
        "outbox: discarded parked event %s (%s of %s %s, topic %s) after %d attempts, last error %r: "
        "%s; %d later rows of the aggregate released",
        event_id,
        cause.event_type,
        cause.aggregate_type,
        cause.aggregate_id,
        cause.topic,
        cause.attempts,
        cause.last_error,
        reason,
        released,
    )
    return released


async def _cause(connection: AsyncConnection, event_id: uuid.UUID) -> ParkedRow:
    row = (
        await connection.execute(select(outbox_table).where(_o.id == event_id, _PARKED).with_for_update())
    ).one_or_none()
    if row is None:
        raise ParkedRowError(f"no parked outbox row has the event id {event_id}")
    earlier = (
        await connection.execute(
            select(_o.id)
            .where(
                _PARKED,
                _o.aggregate_type == row.aggregate_type,
                _o.aggregate_id == row.aggregate_id,
                _o.position < row.position,
            )
            .order_by(_o.position)
            .limit(1)
        )
    ).scalar_one_or_none()
    if earlier is not None:
        raise ParkedRowError(f"event {event_id} waits behind parked event {earlier}: act on that one")
    return _parked_row(row)


def _parked_row(row: Any) -> ParkedRow:
    return ParkedRow(
        event_id=row.id,
        position=row.position,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        event_type=row.event_type,
        topic=row.topic,
        attempts=row.attempts,
        last_error=row.last_error,
        parked_at=row.parked_at,
        waiting=0,
    )


async def _release(connection: AsyncConnection, cause: ParkedRow, *, reset: bool) -> int:
    """Unpark the aggregate's parked rows; with ``reset`` the cause starts its attempts afresh."""
    values: dict[str, object] = {"parked_at": None, "next_attempt_at": None}
    if reset:
        values["attempts"] = case((_o.position == cause.position, 0), else_=_o.attempts)
    result = await connection.execute(
        update(outbox_table)
        .where(_PARKED, _o.aggregate_type == cause.aggregate_type, _o.aggregate_id == cause.aggregate_id)
        .values(**values)
    )
    return int(result.rowcount or 0)


async def _wake_relay(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
