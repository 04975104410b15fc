"""In-memory fakes of the users context's unit of work, repository and read model (no I/O).

Built on the kit's twins in tests/unit/building_blocks/fakes.py, so they commit through the real
``AggregateTracker``: a handler that changes a user and forgets ``uow.users.update`` fails here
as it would against the database. Several units of work share one :class:`InMemoryTable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from app.users.application.read_models import ActivityEntry, UserDetails, UserPage
from app.users.domain import Email, EmailAlreadyRegistered, User, UserStatus
from tests.unit.building_blocks.fakes import InMemoryRepository, InMemoryTable, InMemoryUnitOfWork


class FakeUserRepository(InMemoryRepository[User]):
    """Emails are unique, as the database's constraint makes them (in any case)."""

    async def get_by_email(self, email: Email) -> User | None:
        return self._load(next((u for u in self.rows() if u.email == email), None))

    def _expect_free(self, user: User) -> None:
        if any(u.email == user.email and u.id != user.id for u in self.rows()):
            raise EmailAlreadyRegistered(str(user.email))

    async def add(self, user: User) -> None:
        self._expect_free(user)
        await super().add(user)

    async def update(self, user: User) -> None:
        self._expect_free(user)
        await super().update(user)


class FakeUserReadModel:
    """The query side: reads rows, no aggregate, no tracking."""

    def __init__(self, users: FakeUserRepository, activity: dict[UUID, list[ActivityEntry]]) -> None:
        self._users = users
        self._activity = activity

    async def get(self, user_id: UUID) -> UserDetails | None:
        user = self._users.current(user_id)
        return UserDetails.from_user(user) if user else None

    async def list(
        self, *, limit: int, after: UUID | None, status: UserStatus | None, email_prefix: str | None
    ) -> UserPage:
        users = sorted(self._users.rows(), key=lambda u: u.id)
        users = [
            u
            for u in users
            if (after is None or u.id > after)
            and (status is None or u.status == status)
            and (email_prefix is None or str(u.email).startswith(email_prefix))
        ]
        page = users[:limit]
        return UserPage(
            items=[UserDetails.from_user(u) for u in page],
            next_after=page[-1].id if len(users) > limit else None,
        )

    async def activity(self, user_id: UUID, *, limit: int) -> Sequence[ActivityEntry]:
        return self._activity.get(user_id, [])[:limit]


class FakeUsersUnitOfWork(InMemoryUnitOfWork):
    """What ``SqlAlchemyUsersUnitOfWork`` provides: ``users`` for writes, ``user_reads`` for reads."""

    def __init__(
        self, table: InMemoryTable[User], activity: dict[UUID, list[ActivityEntry]] | None = None
    ) -> None:
        super().__init__()
        self.users = self.repository(FakeUserRepository(table, self.tracker))
        self.user_reads = FakeUserReadModel(self.users, activity if activity is not None else {})
