"""The fakes keep the kit's rules: a handler that forgets ``uow.users.update`` fails its unit test.

The handlers below are deliberately broken copies of the real ones; the real ones pass the same
checks, so the fakes are not merely strict.
"""

from __future__ import annotations

import pytest

from app.building_blocks.domain.exceptions import ConcurrencyError
from app.building_blocks.infrastructure.persistence.unit_of_work import UnsavedChangesError
from app.users.application.commands import DeactivateUser
from app.users.application.handlers import DeactivateUserHandler
from app.users.application.read_models import UserDetails
from app.users.application.unit_of_work import UsersUnitOfWork
from app.users.domain import Email, User, UserDeactivated, UserNotFound, UserRegistered, UserStatus
from tests.unit.building_blocks.fakes import InMemoryTable
from tests.unit.users.fakes import FakeUsersUnitOfWork


class ForgetfulDeactivateUserHandler:
    """Changes the user and never saves it."""

    def __init__(self, uow: UsersUnitOfWork) -> None:
        self.uow = uow

    async def handle(self, command: DeactivateUser) -> UserDetails:
        user = await self.uow.users.get(command.user_id, for_update=True)
        if user is None:
            raise UserNotFound(command.user_id)
        user.deactivate()  # ...and no `await self.uow.users.update(user)`
        return UserDetails.from_user(user)


@pytest.fixture
async def table() -> InMemoryTable[User]:
    table: InMemoryTable[User] = InMemoryTable()
    async with FakeUsersUnitOfWork(table) as uow:
        await uow.users.add(User.register(email=Email.of("ada@example.com"), name="Ada"))
        assert [type(e) for e in await uow.commit()] == [UserRegistered]
    return table


def only_user(table: InMemoryTable[User]) -> User:
    [user] = table.rows.values()
    return user


async def test_a_handler_that_forgets_update_fails_the_commit_and_changes_nothing(
    table: InMemoryTable[User],
) -> None:
    user_id = only_user(table).id
    async with FakeUsersUnitOfWork(table) as uow:
        await ForgetfulDeactivateUserHandler(uow).handle(DeactivateUser(user_id=user_id))
        with pytest.raises(UnsavedChangesError, match=str(user_id)):
            await uow.commit()
    assert only_user(table).is_active
    assert only_user(table).version == 1


async def test_the_real_handler_saves_and_commits_its_event(table: InMemoryTable[User]) -> None:
    user_id = only_user(table).id
    async with FakeUsersUnitOfWork(table) as uow:
        await DeactivateUserHandler(uow).handle(DeactivateUser(user_id=user_id))
        assert [type(e) for e in await uow.commit()] == [UserDeactivated]
    assert not only_user(table).is_active
    assert only_user(table).version == 2


async def test_writes_reach_the_table_only_on_commit(table: InMemoryTable[User]) -> None:
    user_id = only_user(table).id
    async with FakeUsersUnitOfWork(table) as uow:
        await DeactivateUserHandler(uow).handle(DeactivateUser(user_id=user_id))
        seen = await uow.user_reads.get(user_id)
        assert seen is not None
        assert seen.status is UserStatus.DEACTIVATED  # its own write, visible to it
    assert only_user(table).is_active  # left without commit: rolled back


async def test_a_stale_version_is_a_concurrency_error(table: InMemoryTable[User]) -> None:
    user_id = only_user(table).id
    async with FakeUsersUnitOfWork(table) as uow:
        mine = await uow.users.get(user_id)
    async with FakeUsersUnitOfWork(table) as uow:
        await DeactivateUserHandler(uow).handle(DeactivateUser(user_id=user_id))
        await uow.commit()
    assert mine is not None
    mine.update_profile(name="Mine")
    async with FakeUsersUnitOfWork(table) as uow:
        with pytest.raises(ConcurrencyError):
            await uow.users.update(mine)
