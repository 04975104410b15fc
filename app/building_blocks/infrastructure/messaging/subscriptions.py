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
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.building_blocks.application.mediator import Mediator
from app.building_blocks.application.requests import Request
from app.building_blocks.infrastructure.messaging.consumer import MessageHandler
from app.building_blocks.infrastructure.messaging.envelope import ReceivedMessage
from app.building_blocks.infrastructure.persistence.unit_of_work import enlist

T = TypeVar("T")


@dataclass(frozen=True)
class MessageContext:
    """What a subscription's handler gets besides the message."""

    session: AsyncSession
    mediator: Mediator[Any]

    async def send(self, request: Request[T]) -> T:
        """Send ``request`` through the mediator, its unit of work joined to the inbox's
        transaction (as a savepoint: a command that fails undoes only its own writes)."""
        with enlist(self.session):
            return await self.mediator.send(request)


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

    def __post_init__(self) -> None:
        if not self.aggregates and not self.topics:
            raise ValueError(f"subscription {self.name!r} reads nothing: give aggregates= or topics=")

    def bind(self, mediator: Mediator[Any]) -> MessageHandler:
        """The inbox consumer's handler: ``(message, session)`` with the context added."""
        handler = self.handler

        async def handle(message: ReceivedMessage, session: AsyncSession) -> None:
            await handler(message, MessageContext(session, mediator))

        return handle
