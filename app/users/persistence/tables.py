"""Tables of the users context.

``users`` holds the aggregate; emails are stored normalised, so a plain unique constraint enforces
case-insensitive uniqueness on every backend. ``user_activity`` is a read-side projection.
"""

from __future__ import annotations

from sqlalchemy import JSON, CheckConstraint, Column, Index, Integer, String, Table, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from app.building_blocks.infrastructure.persistence.metadata import metadata
from app.building_blocks.infrastructure.persistence.types import UtcDateTime

users_table = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("status IN ('active', 'deactivated')", name="status"),
    Index("ix_users_status_id", "status", "id"),
)

user_activity_table = Table(
    "user_activity",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("data", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_user_activity_user_id_occurred_at", "user_id", "occurred_at"),
)
"""A projection of the users topic, built by the activity consumer: one row per event."""
