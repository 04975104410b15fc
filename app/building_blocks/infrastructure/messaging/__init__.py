"""Messaging building blocks: integration events over Kafka with a transactional outbox, an
ordered relay, an idempotent inbox and dead letters; an in-process transport when embedded."""

from app.building_blocks.infrastructure.messaging.config import KafkaConfig, OutboxConfig
from app.building_blocks.infrastructure.messaging.consumer import InboxConsumer, MessageHandler
from app.building_blocks.infrastructure.messaging.dead_letters import replay_dead_letters
from app.building_blocks.infrastructure.messaging.envelope import OutgoingMessage, ReceivedMessage
from app.building_blocks.infrastructure.messaging.failures import FailureKind, classify_failure
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter
from app.building_blocks.infrastructure.messaging.publishers import (
    DirectEventPublisher,
    EventPublisher,
    OutboxEventPublisher,
    create_event_publisher,
    create_integration_event_mediator,
)
from app.building_blocks.infrastructure.messaging.relay import OutboxRelay
from app.building_blocks.infrastructure.messaging.tables import inbox_table, outbox_table
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.messaging.transport import (
    InProcessBroker,
    MessageProducer,
    MessageRefusedError,
    MessageSource,
    PartitionsReassignedError,
    TransportUnavailableError,
)

__all__ = [
    "DirectEventPublisher",
    "EventPublisher",
    "FailureKind",
    "InProcessBroker",
    "InboxConsumer",
    "IntegrationEventMapper",
    "KafkaConfig",
    "MessageHandler",
    "MessageProducer",
    "MessageRefusedError",
    "MessageSource",
    "OutboxConfig",
    "OutboxEventPublisher",
    "OutboxRelay",
    "OutboxWriter",
    "OutgoingMessage",
    "PartitionsReassignedError",
    "ReceivedMessage",
    "TopicRouter",
    "TransportUnavailableError",
    "classify_failure",
    "create_event_publisher",
    "create_integration_event_mediator",
    "inbox_table",
    "outbox_table",
    "replay_dead_letters",
]
