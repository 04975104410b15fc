"""What a bounded context consumes: subscriptions whose handlers share the commands' model.

A subscription's handler receives the message and a :class:`MessageContext`: the inbox's
session (for a projection that writes rows directly) and ``send``, which runs a command or a
query through the mediator *inside the inbox's transaction*. A consumer that changes an
aggregate therefore goes through the same handler, unit of work and outbox as an HTTP request,
and its own integration events commit atomically with the inbox record (or, on failure, not at
all, to be retried or dead-lettered with the message).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.building_blocks.application.mediator import Mediator
from app.building_blocks.application.requests import Request
from app.building_blocks.correlation import (
    get_correlation_id,
    reset_causation_id,
    reset_correlation_id,
    set_causation_id,
    set_correlation_id,
)
from app.building_blocks.infrastructure.messaging.consumer import MessageHandler
from app.building_blocks.infrastructure.messaging.envelope import ReceivedMessage
from app.building_blocks.infrastructure.persistence.unit_of_work import enlist

T = TypeVar("T")


@dataclass(frozen=True)
class MessageContext:
    """What a subscription's handler gets besides the message."""

    session: AsyncSession
    mediator: Mediator[Any]
    message: ReceivedMessage | None = None

    async def send(self, request: Request[T]) -> T:
        """Send ``request`` through the mediator, its unit of work joined to the inbox's
        transaction (as a savepoint: a command that fails undoes only its own writes).

        The events it raises carry the message's correlation id (its ``ce_correlationid``, else
        its id) and, as their causation id, the message's id.
        """
        message_id = self.message.message_id if self.message else None
        correlation = self.message.headers.get("ce_correlationid") if self.message else None
        correlation_token = set_correlation_id(correlation or message_id or get_correlation_id())
        causation_token = set_causation_id(message_id)
        try:
            with enlist(self.session):
                return await self.mediator.send(request)
        finally:
            reset_causation_id(causation_token)
            reset_correlation_id(correlation_token)


SubscriptionHandler = Callable[[ReceivedMessage, MessageContext], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """One consumer: a name (its inbox identity and consumer-group suffix), what it reads and
    its handler.

    ``aggregates`` name aggregate types whose topics the service's own router resolves (the
    users context's ``"user"`` → ``<SERVICE_NAME>.users.v1``); ``topics`` are literal topic
    names, e.g. another service's. Renaming ``name`` starts a new consumer group and a new
    inbox identity: the consumer reads its topics again from the start.
    """

    name: str
    handler: SubscriptionHandler
    aggregates: Sequence[str] = ()
    topics: Sequence[str] = ()
    start_at: Literal["earliest", "latest"] = "earliest"
    """Where its group begins the first time (no committed offsets): ``earliest`` reads the
    topics' history (a projection), ``latest`` only what comes after (webhooks: switched on for
    a running service, they must not replay its past to the endpoint)."""

    def __post_init__(self) -> None:
        if not self.aggregates and not self.topics:
            raise ValueError(f"subscription {self.name!r} reads nothing: give aggregates= or topics=")

    def bind(self, mediator: Mediator[Any]) -> MessageHandler:
        """The inbox consumer's handler: ``(message, session)`` with the context added."""
        handler = self.handler

        async def handle(message: ReceivedMessage, session: AsyncSession) -> None:
            await handler(message, MessageContext(session, mediator, message))

        return handle
