"""Composition of integration events: which transport, which relay, which consumers.

Chosen by configuration alone: with ``KAFKA_BOOTSTRAP_SERVERS`` the transport is Kafka and the
worker process (``python -m app.worker``) runs the relay and the consumers; without it an
in-process broker carries the same messages and the API process runs them (embedded mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.infrastructure.messaging.consumer import InboxConsumer
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter
from app.building_blocks.infrastructure.messaging.relay import OutboxRelay
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.messaging.transport import (
    InProcessBroker,
    MessageProducer,
    MessageSource,
)
from app.building_blocks.infrastructure.persistence.database import create_session_factory
from app.building_blocks.infrastructure.persistence.unit_of_work import CommitHook
from app.settings import Settings
from app.users import consumers as user_consumers
from app.users.integration_events import register_mappings

logger = logging.getLogger("app.messaging")

DRAIN_TIMEOUT = 5.0


@dataclass
class Messaging:
    settings: Settings
    mapper: IntegrationEventMapper
    topics: TopicRouter
    producer: MessageProducer
    broker: InProcessBroker | None
    outbox: OutboxWriter | None
    relay: OutboxRelay | None
    consumers: list[InboxConsumer] = field(default_factory=list)
    topic_names: list[str] = field(default_factory=list)  # produced, consumed and dead-letter topics

    @property
    def embedded(self) -> bool:
        return self.broker is not None

    def commit_hooks(self) -> list[CommitHook]:
        return [self.outbox] if self.outbox is not None else []

    async def run(self, stop: asyncio.Event) -> None:
        """Run the relay and every consumer until ``stop`` is set.

        The relay stops first; in the embedded mode the consumers then drain what the in-process
        broker still holds (for at most ``DRAIN_TIMEOUT`` seconds) before they stop too.
        """
        consumers_stop = asyncio.Event()
        consumers = [asyncio.create_task(consumer.run(consumers_stop)) for consumer in self.consumers]
        try:
            if self.relay is not None:
                await self.relay.run(stop)
            else:
                await stop.wait()
            if self.broker is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        while self.broker.pending():  # noqa: ASYNC110 - the broker has no drain event
                            await asyncio.sleep(0.02)
        finally:
            consumers_stop.set()
            await asyncio.gather(*consumers, return_exceptions=True)


def build_messaging(
    settings: Settings, engine: AsyncEngine, *, relay: bool = True, consumers: bool = True
) -> Messaging:
    kafka = settings.kafka
    mapper = IntegrationEventMapper(source=settings.service_name)
    register_mappings(mapper)
    overrides = {"user": settings.users_topic} if settings.users_topic else {}
    topics = TopicRouter(settings.service_name, overrides)

    broker = InProcessBroker() if kafka.embedded else None
    producer: MessageProducer = broker.producer() if broker else KafkaMessageProducer(kafka)

    def source(group: str, topic_names: list[str]) -> MessageSource:
        return broker.source(group, topic_names) if broker else KafkaMessageSource(kafka, group, topic_names)

    outbox_relay = OutboxRelay(engine, producer, settings.outbox) if relay and kafka.enable_outbox else None
    outbox = None
    if kafka.enable_outbox:
        outbox = OutboxWriter(mapper, topics, on_committed=outbox_relay.wake if outbox_relay else None)

    users_topic = topics.topic_for_aggregate("user")
    messaging = Messaging(
        settings,
        mapper,
        topics,
        producer,
        broker,
        outbox,
        outbox_relay,
        topic_names=[users_topic, kafka.dlq_topic(users_topic)],
    )
    if consumers:
        messaging.consumers.append(
            InboxConsumer(
                name=user_consumers.ACTIVITY_CONSUMER,
                source=source(
                    f"{kafka.consumer_group}.{user_consumers.ACTIVITY_CONSUMER}",
                    [users_topic],
                ),
                handler=user_consumers.project_user_activity,
                sessions=create_session_factory(engine),
                dead_letters=producer,
                config=kafka,
            )
        )
    return messaging
