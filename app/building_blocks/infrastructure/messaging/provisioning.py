"""Topics the service needs, created when missing.

Production brokers usually refuse to create topics on first use (``auto.create.topics.enable`` is
off), and a topic created that way gets the broker's defaults, not the partitions and replication
the service was sized for. So the worker creates its topics and their dead-letter topics itself,
with ``KAFKA_TOPIC_PARTITIONS`` and ``KAFKA_TOPIC_REPLICATION_FACTOR``, before relying on them.
An existing topic is left exactly as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.waiting import wait_for_event

logger = logging.getLogger("app.messaging.topics")

RETRY_BACKOFF_MAX = 30.0


class TopicProvisioningError(RuntimeError):
    """The broker answered but would not create a topic (no permission, a bad setting...)."""


async def ensure_topics(config: KafkaConfig, topics: Iterable[str]) -> list[str]:
    """Create those of ``topics`` that do not exist; return their names.

    Safe when several workers start at once: a topic created meanwhile by another is no error.
    Raises :class:`TopicProvisioningError` when the broker refuses one, and the client's
    connection errors when the broker cannot be reached.
    """
    wanted = sorted(set(topics))
    admin = AIOKafkaAdminClient(**config.connection_options())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(name, config.topic_partitions, config.topic_replication_factor) for name in missing]
        )
    finally:
        await admin.close()
    created, refused = [], []
    for name, code, *rest in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TopicAlreadyExistsError.errno:
            message = rest[0] if rest and rest[0] else for_code(code).__name__
            refused.append(f"{name}: {message}")
    if refused:
        raise TopicProvisioningError("the broker would not create " + "; ".join(refused))
    if created:
        logger.info(
            "created topics %s (%d partitions, replication %d)",
            ", ".join(created),
            config.topic_partitions,
            config.topic_replication_factor,
        )
    return created


async def provision_topics(config: KafkaConfig, topics: Iterable[str], stop: asyncio.Event) -> bool:
    """:func:`ensure_topics` until it succeeds, the broker refuses, or ``stop``; whether it succeeded.

    Meant to run beside the relay and the consumers: a broker that is down when the worker starts
    is a delay, as it is for them, not a reason to stop.
    """
    names = list(topics)
    backoff = 1.0
    while not stop.is_set():
        try:
            await ensure_topics(config, names)
            return True
        except TopicProvisioningError as refused:
            logger.error("%s; create them by hand or grant the worker CREATE on the cluster", refused)
            return False
        except Exception as error:  # unreachable, timed out: the broker may be starting
            logger.warning("cannot check topics yet (%s); retrying in %.0fs", error, backoff)
            if await wait_for_event(stop, backoff):
                break
            backoff = min(RETRY_BACKOFF_MAX, backoff * 2)
    return False
