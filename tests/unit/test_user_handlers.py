"""User use cases against in-memory fakes of the repository and read model (no I/O)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

import pytest

from app.building_blocks.application import LoggingBehavior, Mediator, TransactionBehavior
from app.building_blocks.domain import AggregateRoot, DomainEvent
from app.users.application.commands import DeactivateUser, DeleteUser, RegisterUser, UpdateUserProfile
from app.users.application.queries import GetUser, ListUsers
from app.users.application.read_models import UserDetails, UserPage
from app.users.domain import (
    Email,
    EmailAlreadyRegistered,
    User,
    UserDeactivated,
    UserNotFound,
    UserRegistered,
    UserStatus,
    UserVersionMismatch,
)
from app.users.module import register_handlers


class FakeUserRepository:
    def __init__(self, track: Any) -> None:
        self.rows: dict[UUID, User] = {}
        self._track = track

    async def get(self, id: UUID, *, for_update: bool = False) -> User | None:
        user = self.rows.get(id)
        if user is None:
            return None
        copy = user.model_copy(deep=True)
        self._track(copy)
        return copy

    async def get_by_email(self, email: Email) -> User | None:
        return next((u for u in self.rows.values() if u.email == email), None)

    def _store(self, user: User) -> None:
        stored = user.model_copy(deep=True)
        stored.pull_events()  # a database row holds state, not pending events
        self.rows[user.id] = stored

    async def add(self, user: User) -> None:
        user.version = 1
        self._store(user)
        self._track(user)

    async def update(self, user: User) -> None:
        user.version += 1
        self._store(user)
        self._track(user)

    async def remove(self, user: User) -> None:
        del self.rows[user.id]
        self._track(user)


class FakeReadModel:
    def __init__(self, repository: FakeUserRepository) -> None:
        self.repository = repository

    async def get(self, user_id: UUID) -> UserDetails | None:
        user = self.repository.rows.get(user_id)
        return UserDetails.from_user(user) if user else None

    async def list(
        self, *, limit: int, after: UUID | None, status: UserStatus | None, email_prefix: str | None
    ) -> UserPage:
        users = sorted(self.repository.rows.values(), key=lambda u: u.id)
        users = [
            u for u in users if (after is None or u.id > after) and (status is None or u.status == status)
        ]
        users = [u for u in users if email_prefix is None or str(u.email).startswith(email_prefix)]
        page = users[:limit]
        return UserPage(
            items=[UserDetails.from_user(u) for u in page],
            next_after=page[-1].id if len(users) > limit else None,
        )


class FakeUsersUnitOfWork:
    """Shares one store across units of work, like a database would."""

    def __init__(self, store: FakeUserRepository) -> None:
        self.users = store
        self.user_reads = FakeReadModel(store)
        self._seen: list[AggregateRoot] = []
        store._track = self.track
        self.committed: list[DomainEvent] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def track(self, aggregate: AggregateRoot) -> None:
        self._seen.append(aggregate)

    async def commit(self) -> list[DomainEvent]:
        self.committed = [e for a in self._seen for e in a.pull_events()]
        return self.committed

    async def rollback(self) -> None:
        pass


@pytest.fixture
def store() -> FakeUserRepository:
    return FakeUserRepository(track=lambda _a: None)


@pytest.fixture
def units() -> list[FakeUsersUnitOfWork]:
    return []


@pytest.fixture
def mediator(store: FakeUserRepository, units: list[FakeUsersUnitOfWork]) -> Mediator[Any]:
    def factory() -> FakeUsersUnitOfWork:
        units.append(FakeUsersUnitOfWork(store))
        return units[-1]

    mediator: Mediator[Any] = Mediator(
        behaviors=[LoggingBehavior(), TransactionBehavior()], unit_of_work_factory=factory
    )
    register_handlers(mediator)
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
