"""CompiledSelect against real databases: the same rows as ``session.execute`` on both backends,
the driver's path only where a statement is its own transaction, and errors that keep their
meaning on that path (a terminated backend, a value the database refuses)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, literal_column, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.outbox import OutboxWriter
from app.building_blocks.infrastructure.messaging.tables import outbox_table
from app.building_blocks.infrastructure.messaging.topics import TopicRouter
from app.building_blocks.infrastructure.persistence.compiled_statements import CompiledSelect, CompiledWrite
from app.building_blocks.infrastructure.persistence.database import create_engine, read_only_options
from app.building_blocks.infrastructure.persistence.errors import (
    UnstorableValueError,
    translate_integrity_error,
)
from app.users.domain import Email, User
from app.users.integration_events import register_mappings
from app.users.persistence.tables import user_activity_table, users_table
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork
from tests.helpers import unique_email

BY_ID = CompiledSelect(select(users_table).where(users_table.c.id == bindparam("user_id")))
BY_EMAIL = CompiledSelect(select(users_table.c.id).where(users_table.c.email == bindparam("email")))
ACTIVITY = CompiledSelect(
    select(user_activity_table.c.event_id, user_activity_table.c.occurred_at, user_activity_table.c.data)
    .where(user_activity_table.c.user_id == bindparam("user_id"))
    .order_by(user_activity_table.c.occurred_at)
    .limit(bindparam("limit"))
)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, application_name="compiled-select")
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def postgres(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """For what only a server does: refuse a NUL in text, end a session from outside."""
    engine = create_engine(postgres_url, application_name="compiled-select")
    yield engine
    await engine.dispose()


async def reader(engine: AsyncEngine) -> AsyncConnection:
    """A connection as the read-only unit of work opens it."""
    connection = await engine.connect()
    return await connection.execution_options(**read_only_options(engine.dialect.name))


async def seeded_user(engine: AsyncEngine) -> dict[str, Any]:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    user = {
        "id": uuid.uuid4(),
        "email": unique_email("compiled"),
        "name": "Ada",
        "status": "active",
        "created_at": moment,
        "updated_at": moment + timedelta(seconds=1),
        "version": 3,
    }
    activity = [
        {
            "event_id": f"{user['id']}-{n}",
            "user_id": user["id"],
            "event_type": "users.user_registered",
            "occurred_at": moment + timedelta(minutes=n),
            "data": {"n": n, "nested": {"name": "Ada"}, "list": [1, "two", None]},
            "recorded_at": moment,
        }
        for n in range(3)
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(users_table), user)
        await connection.execute(insert(user_activity_table), activity)
    return user


def count_statements(connection: AsyncConnection, kind: str = "") -> list[str]:
    """Statements (starting with ``kind``) that go through SQLAlchemy's execution on ``connection``."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(kind):
            seen.append(statement)

    event.listen(connection.sync_connection, "before_cursor_execute", before)
    return seen


def count_selects(connection: AsyncConnection) -> list[str]:
    return count_statements(connection, "SELECT")


def users_mapper() -> IntegrationEventMapper:
    mapper = IntegrationEventMapper(source="compiled-statements")
    register_mappings(mapper)
    return mapper


async def test_rows_are_those_session_execute_gives(engine: AsyncEngine) -> None:
    user = await seeded_user(engine)
    connection = await reader(engine)
    try:
        expected = dict((await connection.execute(BY_ID.statement, {"user_id": user["id"]})).mappings().one())
        row = await BY_ID.first(connection, user_id=user["id"])
        entries = await ACTIVITY.all(connection, user_id=user["id"], limit=2)
        missing = await BY_ID.first(connection, user_id=uuid.uuid4())
    finally:
        await connection.close()

    assert row == expected == user  # values and types: a UUID, aware UTC datetimes, an int
    assert row is not None
    assert row["created_at"].tzinfo is not None
    assert [entry["event_id"] for entry in entries] == [f"{user['id']}-0", f"{user['id']}-1"]
    assert entries[1]["data"] == {"n": 1, "nested": {"name": "Ada"}, "list": [1, "two", None]}
    assert entries[1]["occurred_at"] == user["created_at"] + timedelta(minutes=1)
    assert missing is None
    assert nothing_checked_out(engine)


def nothing_checked_out(engine: AsyncEngine) -> bool:
    return engine.dialect.name != "postgresql" or engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_autocommit_reads_on_postgresql_skip_sqlalchemys_execution(engine: AsyncEngine) -> None:
    user = await seeded_user(engine)
    connection = await reader(engine)
    try:
        through_sqlalchemy = count_selects(connection)
        assert await BY_ID.first(connection, user_id=user["id"]) is not None
    finally:
        await connection.close()
    on_driver = engine.dialect.driver == "asyncpg"
    assert len(through_sqlalchemy) == (0 if on_driver else 1)


async def test_inside_a_transaction_it_reads_that_transactions_writes(engine: AsyncEngine) -> None:
    """Not autocommit: SQLAlchemy runs the statement, in the transaction it began."""
    user_id, email = uuid.uuid4(), unique_email("uncommitted")
    moment = datetime.now(UTC)
    async with engine.connect() as connection:
        through_sqlalchemy = count_selects(connection)
        await connection.execute(
            insert(users_table),
            {
                "id": user_id,
                "email": email,
                "name": "Tx",
                "status": "active",
                "created_at": moment,
                "updated_at": moment,
                "version": 1,
            },
        )
        assert await BY_EMAIL.first(connection, email=email) == {"id": user_id}
        await connection.rollback()
        assert await BY_EMAIL.first(connection, email=email) is None
    assert len(through_sqlalchemy) == 2


async def test_a_value_the_database_refuses_is_unstorable_not_a_crash(postgres: AsyncEngine) -> None:
    connection = await reader(postgres)
    try:
        with pytest.raises(UnstorableValueError):
            await BY_EMAIL.first(connection, email="nul\x00byte@example.com")
        assert await BY_EMAIL.first(connection, email="nobody@example.com") is None  # still usable
    finally:
        await connection.close()


async def test_a_terminated_backend_is_unavailable_and_leaves_the_pool(postgres: AsyncEngine) -> None:
    engine = postgres
    user = await seeded_user(engine)
    connection = await reader(engine)
    try:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        with pytest.raises(TemporarilyUnavailableError):  # 57P01 admin_shutdown, on the driver
            await TERMINATE_ITSELF.first(connection)
        assert connection.invalidated
    finally:
        await connection.close()
    connection = await reader(engine)
    try:  # the pool gave a live connection, not the dead one
        assert (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
        assert await BY_ID.first(connection, user_id=user["id"]) is not None
    finally:
        await connection.close()
    assert nothing_checked_out(engine)


TERMINATE_ITSELF = CompiledSelect(
    select(literal_column("pg_terminate_backend(pg_backend_pid())").label("gone"))
)


RENAME = CompiledWrite(
    update(users_table).where(
        users_table.c.id == bindparam("_id"), users_table.c.version == bindparam("_version")
    )
)
ADD = CompiledWrite(insert(users_table))


def user_row(**overrides: Any) -> dict[str, Any]:
    moment = datetime.now(UTC)
    row = {
        "id": uuid.uuid4(),
        "email": unique_email("write"),
        "name": "W",
        "status": "active",
        "created_at": moment,
        "updated_at": moment,
        "version": 1,
    }
    return {**row, **overrides}


async def test_writes_set_the_columns_given_and_count_the_rows_matched(engine: AsyncEngine) -> None:
    first, second = user_row(), user_row()
    async with engine.begin() as connection:  # SQLAlchemy's own transaction: its path
        await ADD.execute_many(connection, [first, second])
    connection = await reader(engine)  # autocommit: the driver's path on PostgreSQL
    try:
        assert await RENAME.execute(connection, name="Renamed", version=2, _id=first["id"], _version=1) == 1
        assert await RENAME.execute(connection, name="Stale", version=2, _id=first["id"], _version=1) == 0
        renamed = await BY_ID.first(connection, user_id=first["id"])
        untouched = await BY_ID.first(connection, user_id=second["id"])
    finally:
        await connection.close()
    assert renamed == {**first, "name": "Renamed", "version": 2}  # the rest as it was
    assert untouched == second


async def test_a_unique_violation_is_sqlalchemys_integrity_error_on_either_path(engine: AsyncEngine) -> None:
    taken = user_row()
    async with engine.begin() as connection:
        await ADD.execute(connection, **taken)
    for autocommit in (False, True):
        connection = await (reader(engine) if autocommit else engine.connect())
        try:
            with pytest.raises(IntegrityError) as caught:
                await ADD.execute(connection, **user_row(email=taken["email"]))
        finally:
            await connection.close()
        violation = translate_integrity_error(caught.value)
        assert violation is not None
        assert violation.columns == ("email",)


async def test_the_unit_of_work_on_postgresql_writes_on_the_driver_in_one_transaction(
    postgres: AsyncEngine,
) -> None:
    """Its repository's and its outbox's statements skip SQLAlchemy's execution, and its
    transaction holds them: rolled back, nothing is left; committed, all of it."""
    users = [User.register(email=Email.of(unique_email("uow")), name="Driver") for _ in range(2)]
    for commit, user in zip((False, True), users, strict=True):
        uow = SqlAlchemyUsersUnitOfWork(postgres, hooks=[OutboxWriter(users_mapper(), TopicRouter("svc"))])
        async with uow:
            assert isinstance(uow.session, AsyncConnection)
            through_sqlalchemy = count_statements(uow.session)
            await uow.users.add(user)
            assert await uow.user_reads.get(user.id) is not None  # its own write, in its transaction
            if commit:
                await uow.commit()
        assert through_sqlalchemy == []
    async with postgres.connect() as connection:
        stored = (
            (
                await connection.execute(
                    select(users_table.c.id).where(users_table.c.id.in_([u.id for u in users]))
                )
            )
            .scalars()
            .all()
        )
        outbox = (
            (
                await connection.execute(
                    select(outbox_table.c.aggregate_id).where(
                        outbox_table.c.aggregate_id.in_([str(u.id) for u in users])
                    )
                )
            )
            .scalars()
            .all()
        )
    assert stored == [users[1].id]
    assert outbox == [str(users[1].id)]
