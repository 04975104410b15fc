"""The complete schema: every context's tables and the messaging tables, on the shared metadata.

Alembic's autogenerate and the drift test compare the migrations against this.
"""

from app.building_blocks.infrastructure.messaging import tables as messaging_tables
from app.building_blocks.infrastructure.persistence.metadata import metadata
from app.contexts import CONTEXTS

__all__ = ["CONTEXTS", "messaging_tables", "metadata"]
