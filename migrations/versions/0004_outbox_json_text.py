"""Outbox: payload and headers as ``json`` (the text as written), not ``jsonb``.

The relay sends each payload as it is stored. ``json`` keeps the writer's bytes; ``jsonb`` parsed
them on insert and rendered them again (reordered, with spaces) on every read, work the outbox
never needs: nobody queries inside an event on the hot path. SQLite stores JSON as text already.

PostgreSQL rewrites the table under an exclusive lock; the outbox holds only the retention
period's rows, so this is short, but run it when writes are quiet.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        ALTER TABLE outbox
            ALTER COLUMN payload TYPE {to} USING payload::{to},
            ALTER COLUMN headers DROP DEFAULT,
            ALTER COLUMN headers TYPE {to} USING headers::{to},
            ALTER COLUMN headers SET DEFAULT '{{}}'::{to}
        """
    )


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
