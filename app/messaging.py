"""Composition of integration events: which transport, which relay, which consumers.

Chosen by configuration alone: with ``KAFKA_BOOTSTRAP_SERVERS`` the transport is Kafka and the
worker process (``python -m app.worker``) runs the relay and the consumers; without it an
in-process broker carries the same messages and the API process runs them (embedded mode).
"""

from __future__ import annotations

import asyncio
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
        """Run the relay and every consumer until ``stop`` is set; each stops within its grace.

        With Kafka they are independent and stop together. Embedded, the in-process consumers
        are what acknowledges the relay's sends, so they stop only once the relay has returned
        (its acks in hand get ``OUTBOX_SHUTDOWN_GRACE``; what is left unacknowledged stays in the
        outbox and goes out after the next start).
        """
        consumers_stop = asyncio.Event() if self.embedded else stop
        async with asyncio.TaskGroup() as tasks:
            for consumer in self.consumers:
                tasks.create_task(consumer.run(consumers_stop))
            try:
                if self.relay is not None:
                    await self.relay.run(stop)
                else:
                    await stop.wait()
            finally:
                consumers_stop.set()


def build_messaging(
    settings: Settings, engine: AsyncEngine, *, relay: bool = True, consumers: bool = True
) -> Messaging:
    kafka = settings.kafka
    mapper = IntegrationEventMapper(source=settings.service_name)
    register_mappings(mapper)
    overrides = {"user": settings.users_topic} if settings.users_topic else {}
    topics = TopicRouter(settings.service_name, overrides)

    broker = InProcessBroker() if kafka.embedded else None
    grace = settings.outbox.shutdown_grace  # how long a stopping process waits for the transport
    producer: MessageProducer
    producer = broker.producer() if broker else KafkaMessageProducer(kafka, stop_timeout=grace)

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
                shutdown_grace=grace,
            )
        )
    return messaging
