"""Replaying a dead-letter topic back to the topics its messages came from.

Run it once the cause is fixed: each message is produced again to ``dlq_original_topic`` with its
original key, value and CloudEvents headers (the ``dlq_*`` headers dropped, a ``dlq_replayed_at``
added), then the replay group's offset moves past it. The inbox still deduplicates, so replaying
a message that was in fact handled is harmless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage, ReceivedMessage
from app.building_blocks.infrastructure.messaging.transport import MessageProducer, MessageSource

logger = logging.getLogger("app.messaging.dlq")


def replayed(message: ReceivedMessage) -> OutgoingMessage:
    original = message.headers.get("dlq_original_topic")
    if not original:
        raise ValueError(f"{message.topic}@{message.offset} has no dlq_original_topic header")
    headers = {name: value for name, value in message.headers.items() if not name.startswith("dlq_")}
    headers["dlq_replayed_at"] = datetime.now(UTC).isoformat()
    return OutgoingMessage(topic=original, key=message.key or "", value=message.value, headers=headers)


async def replay_dead_letters(
    source: MessageSource, producer: MessageProducer, *, idle_timeout: float = 3.0, limit: int | None = None
) -> int:
    """Move dead letters back until none arrive for ``idle_timeout`` seconds (or ``limit``)."""
    replayed_count = 0
    await source.start()
    try:
        while limit is None or replayed_count < limit:
            batch = await source.fetch(
                idle_timeout, 100 if limit is None else min(100, limit - replayed_count)
            )
            if not batch:
                break
            done: list[ReceivedMessage] = []
            try:
                for message in batch:
                    await producer.send(replayed(message))
                    done.append(message)
            finally:
                await source.commit(done)
            replayed_count += len(done)
    finally:
        await source.stop()
    logger.info("replayed %d dead letters", replayed_count)
    return replayed_count
