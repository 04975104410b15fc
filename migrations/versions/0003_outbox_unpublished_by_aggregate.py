"""Outbox: partial indexes for the relay's claim and its blocked-row check.

- ``ix_outbox_unpublished_by_aggregate`` (replaces ``ix_outbox_aggregate``): only unpublished
  rows, by aggregate. The relay asks, for each row it claims, whether an earlier row of the
  aggregate is still unpublished; this index answers without visiting the table, stays as small as
  the backlog and, unlike an index of every row, costs nothing when a row is marked published.
- ``ix_outbox_claim`` (replaces ``ix_outbox_unpublished``): the claim's walk in position order.
  Its predicate has ``position > 0`` (always true) so that only the claim, which says so, can use
  it. The outbox's statistics swing between "no backlog" and "a large one"; planned on the former,
  the blocked-row check preferred scanning the unpublished rows by position over probing them by
  aggregate, once per claimed row (measured: 0.1 s instead of 5 ms per batch of 1000).

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
CLAIMABLE = sa.text("published_at IS NULL AND position > 0")


def _index(name: str, columns: list[str], where: sa.TextClause | None = None) -> None:
    op.create_index(
        name, "outbox", columns, postgresql_where=where, sqlite_where=where, postgresql_concurrently=True
    )


def _drop(name: str) -> None:
    op.drop_index(name, table_name="outbox", postgresql_concurrently=True)


def upgrade() -> None:
    # CONCURRENTLY: writers keep inserting into the outbox while the indexes are built.
    with op.get_context().autocommit_block():
        _index(
            "ix_outbox_unpublished_by_aggregate", ["aggregate_type", "aggregate_id", "position"], UNPUBLISHED
        )
        _drop("ix_outbox_aggregate")
        _index("ix_outbox_claim", ["position"], CLAIMABLE)
        _drop("ix_outbox_unpublished")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _index("ix_outbox_unpublished", ["position"], UNPUBLISHED)
        _drop("ix_outbox_claim")
        _index("ix_outbox_aggregate", ["aggregate_type", "aggregate_id", "position"])
        _drop("ix_outbox_unpublished_by_aggregate")
