"""User use cases against in-memory fakes of the repository and read model (no I/O); the fakes
commit through the kit's AggregateTracker (tests/unit/users/fakes.py)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from app.building_blocks.application import LoggingBehavior, Mediator, TransactionBehavior
from app.users.application.commands import DeactivateUser, DeleteUser, RegisterUser, UpdateUserProfile
from app.users.application.queries import GetUser, ListUsers
from app.users.domain import (
    EmailAlreadyRegistered,
    User,
    UserDeactivated,
    UserNotFound,
    UserRegistered,
    UserStatus,
    UserVersionMismatch,
)
from app.users.module import context as users
from tests.unit.building_blocks.fakes import InMemoryTable
from tests.unit.users.fakes import FakeUsersUnitOfWork


@pytest.fixture
def table() -> InMemoryTable[User]:
    return InMemoryTable()


@pytest.fixture
def units() -> list[FakeUsersUnitOfWork]:
    return []


@pytest.fixture
def mediator(table: InMemoryTable[User], units: list[FakeUsersUnitOfWork]) -> Mediator[Any]:
    def factory() -> FakeUsersUnitOfWork:
        units.append(FakeUsersUnitOfWork(table))
        return units[-1]

    mediator: Mediator[Any] = Mediator(behaviors=[LoggingBehavior(), TransactionBehavior()])
    users.register_handlers(mediator, factory)
    return mediator


async def test_register_then_get(mediator: Mediator[Any], units: list[FakeUsersUnitOfWork]) -> None:
    created = await mediator.send(RegisterUser(email="Ada@Example.com", name="Ada"))
    assert created.email == "ada@example.com"
    assert [type(e) for e in units[-1].committed] == [UserRegistered]
    assert await mediator.send(GetUser(user_id=created.id)) == created


async def test_register_twice_is_refused(mediator: Mediator[Any]) -> None:
    await mediator.send(RegisterUser(email="ada@example.com", name="Ada"))
    with pytest.raises(EmailAlreadyRegistered):
        await mediator.send(RegisterUser(email="ADA@example.com", name="Twin"))


async def test_get_unknown_is_not_found(mediator: Mediator[Any]) -> None:
    with pytest.raises(UserNotFound):
        await mediator.send(GetUser(user_id=uuid4()))


async def test_update_checks_expected_versions(mediator: Mediator[Any]) -> None:
    user = await mediator.send(RegisterUser(email="ada@example.com", name="Ada"))
    with pytest.raises(UserVersionMismatch) as caught:
        await mediator.send(UpdateUserProfile(user_id=user.id, name="X", expected_versions=frozenset({7})))
    assert caught.value.details["current_version"] == 1
    updated = await mediator.send(
        UpdateUserProfile(user_id=user.id, name="X", expected_versions=frozenset({1}))
    )
    assert (updated.name, updated.version) == ("X", 2)


async def test_update_to_a_taken_email_is_refused(mediator: Mediator[Any]) -> None:
    await mediator.send(RegisterUser(email="taken@example.com", name="A"))
    other = await mediator.send(RegisterUser(email="other@example.com", name="B"))
    with pytest.raises(EmailAlreadyRegistered):
        await mediator.send(UpdateUserProfile(user_id=other.id, email="TAKEN@example.com"))


async def test_deactivate_commits_its_event(
    mediator: Mediator[Any], units: list[FakeUsersUnitOfWork]
) -> None:
    user = await mediator.send(RegisterUser(email="ada@example.com", name="Ada"))
    result = await mediator.send(DeactivateUser(user_id=user.id))
    assert result.status is UserStatus.DEACTIVATED
    assert [type(e) for e in units[-1].committed] == [UserDeactivated]


async def test_delete_then_list(mediator: Mediator[Any]) -> None:
    users = [await mediator.send(RegisterUser(email=f"u{i}@example.com", name="U")) for i in range(3)]
    await mediator.send(DeleteUser(user_id=users[1].id))
    page = await mediator.send(ListUsers(limit=10, email_prefix=" U"))
    assert [u.id for u in page.items] == [users[0].id, users[2].id]
    first = await mediator.send(ListUsers(limit=1))
    assert first.next_after == users[0].id
