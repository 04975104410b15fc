"""The SQLAlchemy unit of work against real databases (both backends): optimistic concurrency,
rollback, event collection and ordering, changes never saved. The users context's unit of work is
the sample aggregate store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.building_blocks.domain.exceptions import ConcurrencyError
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.users.domain import Email, User, UserProfileUpdated, UserRegistered
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


async def test_stale_version_raises_concurrency_error(uow_factory) -> None:  # type: ignore[no-untyped-def]
    user = await saved_user(uow_factory)
    async with uow_factory() as uow:
        mine = await uow.users.get(user.id)  # read version 1, then the session ends
    assert mine is not None
    async with uow_factory() as uow:
        theirs = await uow.users.get(user.id, for_update=True)
        assert theirs is not None
        theirs.update_profile(name="Theirs")
        await uow.users.update(theirs)
        await uow.commit()
    mine.update_profile(name="Mine")
    async with uow_factory() as uow:
        with pytest.raises(ConcurrencyError):
            await uow.users.update(mine)  # still version 1: refused, not overwritten
    async with uow_factory() as uow:
        current = await uow.users.get(user.id)
        assert current is not None
        assert (current.name, current.version) == ("Theirs", 2)


async def test_leaving_without_commit_rolls_back_and_drops_events(uow_factory) -> None:  # type: ignore[no-untyped-def]
    user = new_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
    async with uow_factory() as uow:
        assert await uow.users.get(user.id) is None


async def test_events_of_every_touched_aggregate_are_collected(uow_factory) -> None:  # type: ignore[no-untyped-def]
    users = [new_user(), new_user()]
    async with uow_factory() as uow:
        for user in users:
            await uow.users.add(user)
        await uow.commit()
    async with uow_factory() as uow:
        for user in users:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.update_profile(name="Changed")
            await uow.users.update(loaded)
        events = await uow.commit()
    assert [type(e) for e in events] == [UserProfileUpdated, UserProfileUpdated]
    assert {e.user_id for e in events if isinstance(e, UserProfileUpdated)} == {u.id for u in users}


async def test_changes_that_were_never_saved_fail_the_commit(uow_factory) -> None:  # type: ignore[no-untyped-def]
    from app.building_blocks.infrastructure.persistence.unit_of_work import UnsavedChangesError

    user = await saved_user(uow_factory)
    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.deactivate()  # ...and no uow.users.update(loaded)
        with pytest.raises(UnsavedChangesError, match=str(user.id)):
            await uow.commit()
    async with uow_factory() as uow:
        current = await uow.users.get(user.id)
        assert current is not None
        assert current.is_active


async def test_events_are_committed_in_the_order_they_were_saved(uow_factory) -> None:  # type: ignore[no-untyped-def]
    from app.users.domain import UserDeactivated, UserReactivated

    user = new_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        user.deactivate()
        await uow.users.update(user)
        user.reactivate()
        await uow.users.update(user)
        events = await uow.commit()
    assert [type(e) for e in events] == [UserRegistered, UserDeactivated, UserReactivated]
