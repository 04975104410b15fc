"""Outbox: index only the unpublished rows by aggregate.

The relay asks, for each aggregate it claims, whether an earlier row is still unpublished. An
index of unpublished rows answers that without visiting the table, stays as small as the backlog,
and, unlike an index of every row, costs nothing when a row is marked published.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    # CONCURRENTLY: writers keep inserting into the outbox while the index is built.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_unpublished_by_aggregate",
            "outbox",
            ["aggregate_type", "aggregate_id", "position"],
            postgresql_where=UNPUBLISHED,
            sqlite_where=UNPUBLISHED,
            postgresql_concurrently=True,
        )
        op.drop_index("ix_outbox_aggregate", table_name="outbox", postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_aggregate",
            "outbox",
            ["aggregate_type", "aggregate_id", "position"],
            postgresql_concurrently=True,
        )
        op.drop_index("ix_outbox_unpublished_by_aggregate", table_name="outbox", postgresql_concurrently=True)
