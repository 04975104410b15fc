"""Outbox and inbox tables, shared by every bounded context of the service.

``outbox``: integration events written in the same transaction as the change that raised them;
``position`` orders them (a relay publishes by position, one aggregate's events never overtake
each other). ``inbox``: one row per (message, consumer) already handled, so a redelivered message
is recognised and skipped.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    text,
)

from app.building_blocks.infrastructure.persistence.metadata import metadata
from app.building_blocks.infrastructure.persistence.types import JsonText, UtcDateTime

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_Position = BigInteger().with_variant(Integer(), "sqlite")

outbox_table = Table(
    "outbox",
    metadata,
    Column("position", _Position, primary_key=True, autoincrement=True),
    Column("id", Uuid, nullable=False, unique=True),
    Column("aggregate_type", String(100), nullable=False),
    Column("aggregate_id", String(100), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("topic", String(249), nullable=False),
    # JSON text: the relay sends the payload exactly as the writer serialized it.
    Column("payload", JsonText(), nullable=False),
    Column("headers", JsonText(), nullable=False, server_default=text("'{}'")),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),  # after a failed send: not before then
    Column("parked_at", UtcDateTime, nullable=True),  # set aside until an operator acts (outbox_admin.py)
    # The relay's claim (see relay_store.py; ``position > 0`` keeps other queries off it).
    Index(
        "ix_outbox_claim",
        "position",
        postgresql_where=text("published_at IS NULL AND parked_at IS NULL AND position > 0"),
        sqlite_where=text("published_at IS NULL AND parked_at IS NULL AND position > 0"),
    ),
    # Whether an earlier row of an aggregate is parked (see relay_store.py): a handful of rows.
    Index(
        "ix_outbox_parked",
        "aggregate_type",
        "aggregate_id",
        "position",
        postgresql_where=text("published_at IS NULL AND parked_at IS NOT NULL"),
        sqlite_where=text("published_at IS NULL AND parked_at IS NOT NULL"),
    ),
    # The relay's check for an earlier unpublished row of an aggregate (see relay_store.py).
    Index(
        "ix_outbox_unpublished_by_aggregate",
        "aggregate_type",
        "aggregate_id",
        "position",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
)

inbox_table = Table(
    "inbox",
    metadata,
    Column("message_id", String(255), primary_key=True),
    Column("consumer", String(200), primary_key=True),
    Column("processed_at", UtcDateTime, nullable=False),
)
