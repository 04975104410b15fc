"""Publishing integration events: through the outbox (reliable) or straight to the transport.

``create_event_publisher(config, session=...)`` picks one from ``KAFKA_ENABLE_OUTBOX``:

- **outbox** (default, production): ``publish`` inserts the event into ``outbox`` in the caller's
  session, so it commits or rolls back with the caller's change; the relay sends it later.
- **direct** (development only): ``publish`` sends at once. Used after a commit, a crash or a
  broker outage between the commit and the send loses the event.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.building_blocks.application.mediator import Mediator, NextStep, RequestContext
from app.building_blocks.domain.events import IntegrationEvent
from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.envelope import (
    OutgoingMessage,
    cloud_event_headers,
    encode_value,
)
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import outbox_row, store_in_outbox
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.messaging.transport import MessageProducer

logger = logging.getLogger("app.messaging")


class EventPublisher(Protocol):
    async def publish(self, event: IntegrationEvent) -> None: ...


class OutboxEventPublisher:
    """Writes to the outbox in ``session``; the caller's commit makes the event real."""

    transactional = True

    def __init__(self, session: AsyncSession, topics: TopicRouter) -> None:
        self.session = session
        self.topics = topics

    async def publish(self, event: IntegrationEvent) -> None:
        row = outbox_row(event, topic=self.topics(event), source=self.topics.service)
        await store_in_outbox(self.session, [row])


class DirectEventPublisher:
    """Sends at once and waits for the ack. Development only (see the module docstring)."""

    transactional = False

    def __init__(self, producer: MessageProducer, topics: TopicRouter) -> None:
        self.producer = producer
        self.topics = topics

    async def publish(self, event: IntegrationEvent) -> None:
        await self.producer.send(
            OutgoingMessage(
                topic=self.topics(event),
                key=event.aggregate_id,
                value=encode_value(event),
                headers=cloud_event_headers(event, source=event.source or self.topics.service),
            )
        )


def create_event_publisher(
    config: KafkaConfig,
    session: AsyncSession | None = None,
    *,
    producer: MessageProducer | None = None,
    topics: TopicRouter | None = None,
) -> EventPublisher:
    """The publisher ``config`` asks for: the outbox (needs ``session``) or direct (needs ``producer``)."""
    topics = topics or TopicRouter(config.client_id)
    if config.enable_outbox:
        if session is None:
            raise ValueError("the outbox publisher writes in the caller's transaction: pass session=")
        return OutboxEventPublisher(session, topics)
    if producer is None:
        raise ValueError("direct publishing needs a producer=")
    return DirectEventPublisher(producer, topics)


class PublishIntegrationEventsBehavior:
    """Outermost behaviour: after a command committed, publish its mapped integration events.

    Only for direct publishing. A failed send is logged, not raised: the command did commit, so
    telling the client it failed would be wrong; the event is lost, which is why production uses
    the outbox.
    """

    def __init__(self, publisher: EventPublisher, mapper: IntegrationEventMapper) -> None:
        self.publisher = publisher
        self.mapper = mapper

    async def handle(self, context: RequestContext[Any], call_next: NextStep) -> Any:
        result = await call_next()
        for event in self.mapper.map_all(context.items.get("domain_events", [])):
            try:
                await self.publisher.publish(event)
            except Exception:
                logger.exception(
                    "lost %s %s: direct publishing failed", event.versioned_type(), event.event_id
                )
        return result


def create_integration_event_mediator(
    base_mediator: Mediator[Any], publisher: EventPublisher, mapper: IntegrationEventMapper
) -> Mediator[Any]:
    """Make ``base_mediator`` publish the integration events of every successful command.

    With the outbox on, events are written by the unit of work's ``OutboxWriter`` inside the
    command's transaction instead, and this function refuses an outbox publisher.
    """
    if getattr(publisher, "transactional", False):
        raise TypeError(
            "an outbox publisher must write inside the command's transaction: "
            "give the unit of work an OutboxWriter instead of wrapping the mediator"
        )
    base_mediator.add_behavior(PublishIntegrationEventsBehavior(publisher, mapper), outermost=True)
    return base_mediator
