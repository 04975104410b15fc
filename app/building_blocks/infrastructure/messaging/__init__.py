"""Messaging building blocks: the transactional outbox and the idempotent inbox tables.

The relay, the Kafka transport and the consumers build on these tables.
"""

from app.building_blocks.infrastructure.messaging.tables import inbox_table, outbox_table

__all__ = ["inbox_table", "outbox_table"]
