"""A consumer that changes an aggregate sends a command, and the command's integration events
commit atomically with the inbox record: both or neither (SQLite and PostgreSQL).

The subscription handlers here run the users context's real ``RegisterUser`` handler through the
service's mediator wiring; the unit of work joins the inbox's transaction as a savepoint.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.application import Command, LoggingBehavior, Mediator, TransactionBehavior
from app.building_blocks.domain.exceptions import DomainError
from app.building_blocks.infrastructure.messaging import (
    IntegrationEventMapper,
    KafkaConfig,
    OutboxWriter,
    ReceivedMessage,
    TopicRouter,
    inbox_table,
    outbox_table,
)
from app.building_blocks.infrastructure.messaging.consumer import InboxConsumer
from app.building_blocks.infrastructure.messaging.subscriptions import MessageContext, Subscription
from app.building_blocks.infrastructure.messaging.transport import InProcessBroker
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.users.application.commands import RegisterUser
from app.users.domain import Email, User
from app.users.integration_events import register_mappings
from app.users.module import context as users
from app.users.persistence.tables import users_table
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork


class Service:
    """The users context on one engine, its outbox writer counting after-commit wake-ups."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = create_session_factory(engine)
        self.woken = 0
        mapper = IntegrationEventMapper(source="consumer-tests")
        register_mappings(mapper)
        self.writer = OutboxWriter(mapper, TopicRouter("consumer-tests"), on_committed=self._wake)
        self.mediator: Mediator[Any] = Mediator(behaviors=[LoggingBehavior(), TransactionBehavior()])
        users.register_handlers(
            self.mediator, lambda: SqlAlchemyUsersUnitOfWork(self.sessions, [self.writer])
        )
        self.broker = InProcessBroker()

    def unit_of_work(self) -> SqlAlchemyUsersUnitOfWork:
        return SqlAlchemyUsersUnitOfWork(self.sessions, [self.writer])

    def _wake(self) -> None:
        self.woken += 1

    def consumer(self, handler: Any) -> InboxConsumer:
        name = f"sends-commands-{uuid.uuid4().hex[:6]}"
        subscription = Subscription(name, handler, topics=["partners.signups.v1"])
        return InboxConsumer(
            name=name,
            source=self.broker.source(name, list(subscription.topics)),
            handler=subscription.bind(self.mediator),
            sessions=self.sessions,
            dead_letters=self.broker.producer(wait_for_consumers=False),
            config=KafkaConfig(_env_file=None, retry_attempts=1, retry_backoff_ms=1),  # type: ignore[call-arg]
        )

    async def count(self, table: Any, **where: Any) -> int:
        async with self.engine.connect() as connection:
            query = select(func.count()).select_from(table)
            for column, value in where.items():
                query = query.where(table.c[column] == value)
            return int((await connection.execute(query)).scalar_one())


@pytest.fixture
async def service(private_database_url: str) -> AsyncIterator[Service]:
    engine = create_engine(private_database_url)
    yield Service(engine)
    await engine.dispose()


def signup(email: str) -> ReceivedMessage:
    """A partner service's message: someone signed up there, so register them here."""
    return ReceivedMessage(
        topic="partners.signups.v1",
        partition=0,
        offset=0,
        key=email,
        value=json.dumps({"email": email, "name": "Partner"}).encode(),
        headers={
            "ce_id": str(uuid.uuid4()),
            "ce_type": "partners.signed_up.v1",
            "ce_correlationid": f"partner-request-{email}",
        },
    )


async def test_the_command_its_outbox_rows_and_the_inbox_record_commit_together(service: Service) -> None:
    async def register(message: ReceivedMessage, context: MessageContext) -> None:
        await context.send(RegisterUser(email=message.json()["email"], name="Partner"))
        assert service.woken == 0, "the relay is woken only once the inbox's transaction commits"

    message = signup("first@example.com")
    assert await service.consumer(register).process(message) == "handled"
    assert await service.count(users_table, email="first@example.com") == 1
    assert await service.count(outbox_table, event_type="users.user_registered.v1") == 1
    assert await service.count(inbox_table, message_id=message.message_id) == 1
    assert service.woken == 1
    async with service.engine.connect() as connection:
        [headers] = [
            row.headers
            for row in await connection.execute(select(outbox_table.c.headers, outbox_table.c.payload))
            if "first@example.com" in str(row.payload)
        ]
    # the event says what caused it (the consumed message) and which request it all began with
    assert json.loads(headers)["ce_causationid"] == message.message_id
    assert json.loads(headers)["ce_correlationid"] == "partner-request-first@example.com"


async def test_a_handler_failing_after_its_command_leaves_nothing_behind(service: Service) -> None:
    async def register_then_fail(message: ReceivedMessage, context: MessageContext) -> None:
        await context.send(RegisterUser(email=message.json()["email"], name="Partner"))
        raise RuntimeError("the handler fails after the command committed its savepoint")

    message = signup("second@example.com")
    rows_before = await service.count(outbox_table)
    assert await service.consumer(register_then_fail).process(message) == "dead-lettered"
    assert await service.count(users_table, email="second@example.com") == 0
    assert await service.count(outbox_table) == rows_before  # the command's event went with it
    assert await service.count(inbox_table, message_id=message.message_id) == 0
    assert service.woken == 0


class QuotaExceeded(DomainError):
    pass


class RegisterWithinQuota(Command[None]):
    """Registers the user, then finds the partner's quota used up: written, then refused."""

    email: str


class RegisterWithinQuotaHandler:
    def __init__(self, uow: SqlAlchemyUsersUnitOfWork) -> None:
        self.uow = uow

    async def handle(self, command: RegisterWithinQuota) -> None:
        await self.uow.users.add(User.register(email=Email.of(command.email), name="Partner"))
        await self.uow.session.flush()  # the row and its event are written ...
        raise QuotaExceeded("the partner's quota is used up")  # ... and then the command is refused


async def test_a_refused_command_undoes_only_its_own_writes(service: Service) -> None:
    service.mediator.register(
        RegisterWithinQuota,
        lambda context: RegisterWithinQuotaHandler(context.unit_of_work),
        unit_of_work_factory=service.unit_of_work,
    )

    async def register_or_wait_list(message: ReceivedMessage, context: MessageContext) -> None:
        email = message.json()["email"]
        try:
            await context.send(RegisterWithinQuota(email=email))
        except QuotaExceeded:  # an expected outcome: put them on the waiting list instead
            await context.send(RegisterUser(email=f"waiting.{email}", name="Partner"))

    rows_before = await service.count(outbox_table)
    message = signup("third@example.com")
    assert await service.consumer(register_or_wait_list).process(message) == "handled"
    assert await service.count(users_table, email="third@example.com") == 0  # its savepoint rolled back
    assert await service.count(users_table, email="waiting.third@example.com") == 1
    assert await service.count(outbox_table) == rows_before + 1  # the refused command's event is gone
    assert await service.count(inbox_table, message_id=message.message_id) == 1
