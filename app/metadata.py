"""The complete schema: importing this module registers every table on the shared metadata.

Alembic's autogenerate and the drift test compare the migrations against this.
"""

from app.building_blocks.infrastructure.messaging import tables as messaging_tables
from app.building_blocks.infrastructure.persistence.metadata import metadata
from app.users.persistence import tables as users_tables

__all__ = ["messaging_tables", "metadata", "users_tables"]
