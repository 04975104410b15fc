"""In-process messaging test helpers: outbox rows written through the real writer, a
fault-injecting producer, a recording consumer handler, and polls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.domain.events import DomainEvent
from app.building_blocks.domain.identifiers import uuid7
from app.building_blocks.infrastructure.messaging import (
    InboxConsumer,
    InProcessBroker,
    OutboxRelay,
    OutgoingMessage,
    ReceivedMessage,
    TopicRouter,
    outbox_table,
)
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter
from app.building_blocks.infrastructure.messaging.transport import MessageRefusedError
from app.building_blocks.infrastructure.persistence.database import create_session_factory
from app.users.domain import Email, User, UserProfileUpdated, UserRegistered
from app.users.integration_events import register_mappings
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork


class FlakyProducer:
    """The in-process producer with faults to inject: every send for the keys in ``broken``
    fails, for those in ``refused`` is refused for good, and with ``silent`` no send is ever
    acknowledged (a broker that takes messages and never answers). With ``delay`` each send
    takes that long, so relay lanes overlap as they do with Kafka."""

    def __init__(self, broker: InProcessBroker, delay: float = 0.0) -> None:
        self.inner = broker.producer()
        self.delay = delay
        self.broken: set[str] = set()
        self.refused: set[str] = set()
        self.silent = False
        self.attempts: list[str] = []
        self.abandoned = 0
        self._unanswered: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self.abandon_pending()

    async def enqueue(self, message: OutgoingMessage) -> Awaitable[None]:
        self.attempts.append(message.key)
        if self.delay:
            await asyncio.sleep(self.delay)
        if message.key in self.broken:
            raise ConnectionError(f"broker refused {message.key}")
        if message.key in self.refused:
            raise MessageRefusedError(f"MessageSizeTooLargeError: {message.key} is too large")
        if self.silent:
            never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._unanswered.append(never)
            return never
        return await self.inner.enqueue(message)

    async def send(self, message: OutgoingMessage) -> None:
        await (await self.enqueue(message))

    async def abandon_pending(self) -> None:
        self.abandoned += 1
        for never in self._unanswered:
            never.cancel()
        self._unanswered.clear()
        await self.inner.abandon_pending()


def writer(topic: str) -> OutboxWriter:
    mapper = IntegrationEventMapper(source="test-service")
    register_mappings(mapper)
    return OutboxWriter(mapper, TopicRouter("test-service", {"user": topic}))


async def write_user_history(engine: AsyncEngine, topic: str, steps: int = 3) -> User:
    """Register a user and change it ``steps - 1`` times, each in its own transaction."""
    sessions = create_session_factory(engine)
    user = User.register(email=Email.of(f"relay-{uuid.uuid4().hex[:10]}@example.com"), name="n0")
    async with SqlAlchemyUsersUnitOfWork(sessions, [writer(topic)]) as uow:
        await uow.users.add(user)
        await uow.commit()
    for step in range(1, steps):
        async with SqlAlchemyUsersUnitOfWork(sessions, [writer(topic)]) as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.update_profile(name=f"n{step}")
            await uow.users.update(loaded)
            await uow.commit()
    return user


async def drain(relay: OutboxRelay) -> None:
    while (await relay.publish_batch()).claimed:
        pass


async def unpublished(engine: AsyncEngine, topic: str) -> list[Any]:
    async with engine.connect() as connection:
        return list(
            await connection.execute(
                select(outbox_table.c.aggregate_id, outbox_table.c.attempts, outbox_table.c.last_error)
                .where(outbox_table.c.topic == topic, outbox_table.c.published_at.is_(None))
                .order_by(outbox_table.c.position)
            )
        )


def names(broker: InProcessBroker, topic: str, key: str) -> list[str]:
    return [m.json()["name"] for m in broker.messages(topic) if m.key == key]


async def fill(engine: AsyncEngine, topic: str, count: int) -> None:
    """``count`` registrations written straight through the outbox writer, in one transaction."""
    events: list[DomainEvent] = [
        UserRegistered(user_id=uuid7(), email=f"plan-{i}@example.com", name=f"Plan {i}") for i in range(count)
    ]
    async with create_session_factory(engine)() as session, session.begin():
        await writer(topic).before_commit(session, events)


async def rename(engine: AsyncEngine, topic: str, user_id: uuid.UUID, names_: list[str]) -> None:
    """Profile updates of one user straight through the outbox writer, one transaction."""
    events: list[DomainEvent] = [UserProfileUpdated(user_id=user_id, name=name) for name in names_]
    async with create_session_factory(engine)() as session, session.begin():
        await writer(topic).before_commit(session, events)


class Recorder:
    """A consumer handler that writes nothing, records what it handled and fails on demand."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.calls = 0
        self.failing: set[str] = set()

    async def __call__(self, message: ReceivedMessage, _session: Any) -> None:
        self.calls += 1
        if message.message_id in self.failing:
            raise RuntimeError(f"cannot handle {message.message_id}")
        self.seen.append(str(message.message_id))


def event(topic: str, message_id: str, key: str = "k") -> OutgoingMessage:
    return OutgoingMessage(topic=topic, key=key, value=b'{"n": 1}', headers={"ce_id": message_id})


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls counters the consumer updates
            await asyncio.sleep(0.02)


async def run_until(consumer: InboxConsumer, done: Callable[[], bool], timeout: float = 20) -> None:
    """Run ``consumer`` as the worker does until ``done()``, then stop it as SIGTERM would."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(done, timeout)
    finally:
        stop.set()
        await task
