"""The users repository and read model against real databases (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.users.domain import Email, EmailAlreadyRegistered, User, UserRegistered
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork
from tests.helpers import unique_email


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def uow_factory(engine: AsyncEngine):  # type: ignore[no-untyped-def]
    sessions: async_sessionmaker = create_session_factory(engine)  # type: ignore[type-arg]
    return lambda: SqlAlchemyUsersUnitOfWork(sessions)


def new_user(email: str | None = None) -> User:
    return User.register(email=Email.of(email or unique_email()), name="Repo")


async def saved_user(uow_factory, email: str | None = None) -> User:  # type: ignore[no-untyped-def]
    """A new user, registered and committed in a unit of work of its own."""
    user = new_user(email)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


async def test_add_get_and_commit_returns_recorded_events(uow_factory) -> None:  # type: ignore[no-untyped-def]
    user = new_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        events = await uow.commit()
    assert [type(e) for e in events] == [UserRegistered]
    assert user.version == 1
    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        assert loaded.model_dump() == user.model_dump()
        assert loaded.created_at.tzinfo is not None
        assert await uow.users.get_by_email(Email.of(str(user.email).upper())) == user


async def test_unique_constraint_is_translated_without_the_handler_precheck(uow_factory) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    await saved_user(uow_factory, email)
    async with uow_factory() as uow:
        with pytest.raises(EmailAlreadyRegistered):
            await uow.users.add(new_user(email.upper()))


async def test_values_the_database_refuses_become_validation_errors(postgres_url: str) -> None:
    """Safety net under input validation: a NUL byte reaching PostgreSQL is a 400, not a 500."""
    from app.building_blocks.infrastructure.persistence.errors import UnstorableValueError
    from app.users.persistence.read_model import SqlAlchemyUserReadModel

    engine = create_engine(postgres_url)
    try:
        async with create_session_factory(engine)() as session:
            with pytest.raises(UnstorableValueError):
                await SqlAlchemyUserReadModel(session).list(
                    limit=1, after=None, status=None, email_prefix="a\x00b"
                )
    finally:
        await engine.dispose()
