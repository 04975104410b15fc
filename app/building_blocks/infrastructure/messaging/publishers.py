"""Publishing integration events: through the outbox (reliable) or straight to the transport.

``create_event_publisher(config, session=...)`` picks one from ``KAFKA_ENABLE_OUTBOX``:

- **outbox** (default, production): ``publish`` inserts the event into ``outbox`` in the caller's
  session, so it commits or rolls back with the caller's change; the relay sends it later.
- **direct** (development only): ``publish`` sends at once, through the ``producer=`` given or
  one of its own for ``KAFKA_BOOTSTRAP_SERVERS`` (closed by ``aclose()``). Used after a commit,
  a crash or a broker outage between the commit and the send loses the event.

``create_integration_event_mediator(mediator, publisher, mapper)`` makes every command publish
its mapped integration events with either: an outbox publisher writes them inside the
command's own transaction (its unit of work gets an :class:`OutboxWriter`), a direct one sends
them once the command has committed.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.building_blocks.application.mediator import Mediator, NextStep, PipelineBehavior, RequestContext
from app.building_blocks.domain.events import IntegrationEvent
from app.building_blocks.infrastructure.messaging.config import KafkaConfig
from app.building_blocks.infrastructure.messaging.envelope import (
    OutgoingMessage,
    cloud_event_headers,
    encode_value,
)
from app.building_blocks.infrastructure.messaging.kafka import KafkaMessageProducer
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter, outbox_row, store_in_outbox
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.messaging.transport import MessageProducer
from app.building_blocks.infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork

logger = logging.getLogger("app.messaging")


class EventPublisher(Protocol):
    async def publish(self, event: IntegrationEvent) -> None: ...


class OutboxEventPublisher:
    """Writes to the outbox in ``session``; the caller's commit makes the event real.

    Given to :func:`create_integration_event_mediator` it needs no session: each command's
    events go into that command's own transaction.
    """

    transactional = True

    def __init__(self, session: AsyncSession | None, topics: TopicRouter) -> None:
        self.session = session
        self.topics = topics

    async def publish(self, event: IntegrationEvent) -> None:
        if self.session is None:
            raise RuntimeError("this outbox publisher has no session: create it with session=")
        row = outbox_row(event, topic=self.topics(event), source=self.topics.service)
        await store_in_outbox(self.session, [row])

    async def aclose(self) -> None:
        """Nothing to release: the session is the caller's."""


class DirectEventPublisher:
    """Sends at once and waits for the ack. Development only (see the module docstring)."""

    transactional = False

    def __init__(
        self, producer: MessageProducer, topics: TopicRouter, *, owns_producer: bool = False
    ) -> None:
        self.producer = producer
        self.topics = topics
        self._owns_producer = owns_producer

    async def aclose(self) -> None:
        """Stop the producer if this publisher created it (a ``producer=`` given stays the caller's)."""
        if self._owns_producer:
            await self.producer.stop()

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
    """The publisher ``config`` asks for: the outbox (writing in ``session``) or direct.

    Direct publishing uses ``producer`` or, without one, a Kafka producer of its own for
    ``config`` (connected on the first publish; ``aclose()`` stops it).
    """
    topics = topics or TopicRouter(config.service_name)
    if config.enable_outbox:
        return OutboxEventPublisher(session, topics)
    if producer is not None:
        return DirectEventPublisher(producer, topics)
    if config.embedded:
        raise ValueError(
            "direct publishing sends to Kafka: set KAFKA_BOOTSTRAP_SERVERS, or pass producer= "
            "(e.g. InProcessBroker().producer())"
        )
    return DirectEventPublisher(KafkaMessageProducer(config), topics, owns_producer=True)


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


class OutboxIntegrationEventsBehavior:
    """Gives every command's unit of work an :class:`OutboxWriter`, so the command's mapped
    integration events are stored in its own transaction, atomically with its state."""

    def __init__(self, topics: TopicRouter, mapper: IntegrationEventMapper) -> None:
        self.writer = OutboxWriter(mapper, topics)

    async def handle(self, context: RequestContext[Any], call_next: NextStep) -> Any:
        if context.is_command:
            unit_of_work = context.unit_of_work
            if not isinstance(unit_of_work, SqlAlchemyUnitOfWork):
                raise TypeError(
                    f"the outbox writes in the command's transaction: {type(unit_of_work).__name__} "
                    "is not a SqlAlchemyUnitOfWork"
                )
            if not any(isinstance(hook, OutboxWriter) for hook in unit_of_work.hooks):
                unit_of_work.add_hook(self.writer)
        return await call_next()


def create_integration_event_mediator(
    base_mediator: Mediator[Any], publisher: EventPublisher, mapper: IntegrationEventMapper
) -> Mediator[Any]:
    """Make ``base_mediator`` publish the integration events of every successful command.

    An outbox publisher (``KAFKA_ENABLE_OUTBOX=true``) stores them inside each command's own
    transaction; a direct one sends them after the commit. A unit of work that already has an
    outbox writer (the service's, see ``app/composition.py``) keeps it: nothing is stored twice.
    """
    behavior: PipelineBehavior
    if isinstance(publisher, OutboxEventPublisher):
        behavior = OutboxIntegrationEventsBehavior(publisher.topics, mapper)
    elif getattr(publisher, "transactional", False):
        raise TypeError(f"{type(publisher).__name__} is transactional but not an OutboxEventPublisher")
    else:
        behavior = PublishIntegrationEventsBehavior(publisher, mapper)
    base_mediator.add_behavior(behavior, outermost=True)
    return base_mediator
