"""Composition of integration events: which transport, which relay, which consumers.

Chosen by configuration alone: with ``KAFKA_BOOTSTRAP_SERVERS`` the transport is Kafka and the
worker process (``python -m app.worker``) runs the relay and the consumers; without it an
in-process broker carries the same messages and the API process runs them (embedded mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.application.mediator import Mediator
from app.building_blocks.bounded_context import BoundedContext
from app.building_blocks.infrastructure.messaging.consumer import InboxConsumer
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer, KafkaMessageSource
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter
from app.building_blocks.infrastructure.messaging.relay import OutboxRelay
from app.building_blocks.infrastructure.messaging.subscriptions import Subscription
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.messaging.transport import (
    InProcessBroker,
    MessageProducer,
    MessageSource,
)
from app.building_blocks.infrastructure.persistence.database import create_session_factory
from app.building_blocks.infrastructure.persistence.unit_of_work import CommitHook
from app.settings import Settings

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
    topic_names: list[str] = field(default_factory=list)  # to provision: produced, consumed, dead letters

    @property
    def embedded(self) -> bool:
        return self.broker is not None

    def commit_hooks(self) -> list[CommitHook]:
        return [self.outbox] if self.outbox is not None else []

    def add_consumers(
        self,
        contexts: Sequence[BoundedContext],
        mediator: Mediator[Any],
        engine: AsyncEngine,
        extra: Sequence[Subscription] = (),
    ) -> None:
        """One inbox consumer per subscription (every context's, then ``extra``: the service's
        own, such as the webhooks), in group ``<KAFKA_CONSUMER_GROUP>.<name>``.

        The topics they read are provisioned with their dead-letter topics; another service's
        topic is left to that service (a consumer waits for it to appear).
        """
        kafka = self.settings.kafka
        sessions = create_session_factory(engine)
        subscriptions = [*(s for context in contexts for s in context.subscriptions), *extra]
        for subscription in subscriptions:
            own = [self.topics.topic_for_aggregate(aggregate) for aggregate in subscription.aggregates]
            topic_names = [*own, *subscription.topics]
            self._provision([*own, *(kafka.dlq_topic(topic) for topic in topic_names)])
            group = kafka.group(subscription.name)
            source: MessageSource
            if self.broker is not None:
                source = self.broker.source(group, topic_names)
            else:
                source = KafkaMessageSource(kafka, group, topic_names, start_at=subscription.start_at)
            self.consumers.append(
                InboxConsumer(
                    name=subscription.name,
                    source=source,
                    handler=subscription.bind(mediator),
                    sessions=sessions,
                    dead_letters=self.producer,
                    config=kafka,
                    shutdown_grace=self.settings.outbox.shutdown_grace,
                )
            )

    def _provision(self, topic_names: Iterable[str]) -> None:
        self.topic_names.extend(name for name in topic_names if name not in self.topic_names)

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
    settings: Settings, engine: AsyncEngine, contexts: Sequence[BoundedContext], *, relay: bool = True
) -> Messaging:
    """The transport, the mapper every context registered its events with, the outbox and the
    relay; consumers are added by :meth:`Messaging.add_consumers` once the mediator exists."""
    kafka = settings.kafka
    mapper = IntegrationEventMapper(source=settings.service_name)
    for context in contexts:
        if context.integration_events is not None:
            context.integration_events(mapper)
    topics = TopicRouter(settings.service_name, settings.topic_overrides)

    broker = InProcessBroker() if kafka.embedded else None
    grace = settings.outbox.shutdown_grace  # how long a stopping process waits for the transport
    producer: MessageProducer
    producer = broker.producer() if broker else KafkaMessageProducer(kafka, stop_timeout=grace)

    outbox_relay = OutboxRelay(engine, producer, settings.outbox) if relay and kafka.enable_outbox else None
    outbox = None
    if kafka.enable_outbox:
        outbox = OutboxWriter(mapper, topics, on_committed=outbox_relay.wake if outbox_relay else None)

    published = [topics.topic_for_aggregate(name) for context in contexts for name in context.aggregates]
    return Messaging(settings, mapper, topics, producer, broker, outbox, outbox_relay, topic_names=published)
