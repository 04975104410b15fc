"""The ``users`` table. Emails are stored normalised, so a plain unique constraint enforces
case-insensitive uniqueness on every backend."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table, Uuid

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
