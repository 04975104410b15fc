"""Outbox: per-row retry time and parking.

- ``next_attempt_at``: after a failed send the row waits until then (the relay records it).
- ``parked_at``: the row is out of the relay's way until an operator retries or discards it
  (``python -m app.worker outbox ...``): a row the broker refuses for good, or one that failed
  ``OUTBOX_MAX_ATTEMPTS`` times, and the later rows of its aggregate, which wait behind it.
- ``ix_outbox_claim`` leaves parked rows out, so the claim's ordered walk never steps over them
  however many accumulate; ``ix_outbox_parked`` (tiny) answers "is an earlier row of this
  aggregate parked?" for the rows the claim finds blocked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
CLAIMABLE_BEFORE = sa.text("published_at IS NULL AND position > 0")
CLAIMABLE = sa.text("published_at IS NULL AND parked_at IS NULL AND position > 0")
PARKED = sa.text("published_at IS NULL AND parked_at IS NOT NULL")


def _index(name: str, columns: list[str], where: sa.TextClause) -> None:
    op.create_index(
        name, "outbox", columns, postgresql_where=where, sqlite_where=where, postgresql_concurrently=True
    )


def _drop(name: str) -> None:
    op.drop_index(name, table_name="outbox", postgresql_concurrently=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as table:  # adding nullable columns: no rewrite
        table.add_column(sa.Column("next_attempt_at", TIMESTAMP, nullable=True))
        table.add_column(sa.Column("parked_at", TIMESTAMP, nullable=True))
    # CONCURRENTLY: writers keep inserting into the outbox while the indexes are built.
    with op.get_context().autocommit_block():
        _drop("ix_outbox_claim")
        _index("ix_outbox_claim", ["position"], CLAIMABLE)
        _index("ix_outbox_parked", ["aggregate_type", "aggregate_id", "position"], PARKED)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _drop("ix_outbox_parked")
        _drop("ix_outbox_claim")
        _index("ix_outbox_claim", ["position"], CLAIMABLE_BEFORE)
    with op.batch_alter_table("outbox") as table:
        table.drop_column("parked_at")
        table.drop_column("next_attempt_at")
