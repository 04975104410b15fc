"""In-memory twins of the kit's SQLAlchemy repository and unit of work, for unit tests of handlers.

They keep the kit's rules, not just its method names: a unit of work commits through the kit's own
``AggregateTracker`` (so a handler that changes an aggregate and forgets ``repository.update``
fails with ``UnsavedChangesError``, as it would against a database), versions start at 1 and a
stale one raises ``ConcurrencyError``, and writes reach the shared table only on commit. No I/O.

A context's fakes subclass these (see tests/unit/users/fakes.py)::

    class FakeOrderRepository(InMemoryRepository[Order]): ...

    class FakeOrdersUnitOfWork(InMemoryUnitOfWork):
        def __init__(self, orders: InMemoryTable[Order]) -> None:
            super().__init__()
            self.orders = self.repository(FakeOrderRepository(orders, self.tracker))
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Generic, Self, TypeVar
from uuid import UUID

from app.building_blocks.domain import AggregateRoot, DomainEvent
from app.building_blocks.domain.exceptions import ConcurrencyError, ConflictError
from app.building_blocks.infrastructure.persistence.unit_of_work import AggregateTracker

TAggregate = TypeVar("TAggregate", bound=AggregateRoot)
TRepository = TypeVar("TRepository", bound="InMemoryRepository")  # type: ignore[type-arg]


def stored(aggregate: TAggregate) -> TAggregate:
    """What a row holds: a copy of the state, never the pending events."""
    row = aggregate.model_copy(deep=True)
    row.pull_events()
    return row


class InMemoryTable(Generic[TAggregate]):
    """Committed rows by id, shared by every unit of work of a test, like a database table."""

    def __init__(self) -> None:
        self.rows: dict[UUID, TAggregate] = {}


class InMemoryRepository(Generic[TAggregate]):
    """The semantics of ``SqlAlchemyRepository`` on an :class:`InMemoryTable`.

    Loads are deep copies reported to the tracker as loaded; ``add``/``update``/``remove`` stage a
    row and report the aggregate as saved (which takes its events). Staged rows are visible to
    this unit of work at once and to the table on commit.
    """

    def __init__(self, table: InMemoryTable[TAggregate], tracker: AggregateTracker) -> None:
        self.table = table
        self._tracker = tracker
        self._staged: dict[UUID, TAggregate | None] = {}  # None: removed

    def current(self, id: UUID) -> TAggregate | None:
        """The row as this unit of work sees it (its own writes included)."""
        if id in self._staged:
            return self._staged[id]
        return self.table.rows.get(id)

    def rows(self) -> Iterator[TAggregate]:
        ids = dict.fromkeys([*self.table.rows, *self._staged])
        return (row for id in ids if (row := self.current(id)) is not None)

    def _load(self, row: TAggregate | None) -> TAggregate | None:
        if row is None:
            return None
        aggregate = row.model_copy(deep=True)
        self._tracker.loaded(aggregate)
        return aggregate

    async def get(self, id: UUID, *, for_update: bool = False) -> TAggregate | None:
        return self._load(self.current(id))

    async def add(self, aggregate: TAggregate) -> None:
        if self.current(aggregate.id) is not None:
            raise ConflictError(f"{type(aggregate).__name__} {aggregate.id} already exists")
        aggregate.version = 1
        self._staged[aggregate.id] = stored(aggregate)
        self._tracker.saved(aggregate)

    async def update(self, aggregate: TAggregate) -> None:
        self._expect_version(aggregate)
        aggregate.version += 1
        self._staged[aggregate.id] = stored(aggregate)
        self._tracker.saved(aggregate)

    async def remove(self, aggregate: TAggregate) -> None:
        self._expect_version(aggregate)
        self._staged[aggregate.id] = None
        self._tracker.saved(aggregate)

    def _expect_version(self, aggregate: TAggregate) -> None:
        row = self.current(aggregate.id)
        if row is None or row.version != aggregate.version:
            raise ConcurrencyError(
                f"{type(aggregate).__name__} {aggregate.id} was changed by another request",
                id=str(aggregate.id),
            )

    def apply(self) -> None:
        for id, row in self._staged.items():
            if row is None:
                self.table.rows.pop(id, None)
            else:
                self.table.rows[id] = row
        self._staged.clear()

    def discard(self) -> None:
        self._staged.clear()


class InMemoryUnitOfWork:
    """The kit's ``SqlAlchemyUnitOfWork`` without a database.

    ``commit`` drains the tracker first, exactly like the real one: an aggregate that still holds
    events was changed but never saved, and the commit fails with ``UnsavedChangesError`` before
    anything is written. Leaving without a commit discards the staged writes (a rollback).
    ``committed`` keeps the events of the last commit for assertions.
    """

    def __init__(self) -> None:
        self.tracker = AggregateTracker()
        self.read_only = False
        self.committed: list[DomainEvent] = []
        self._repositories: list[InMemoryRepository[AggregateRoot]] = []

    def repository(self, repository: TRepository) -> TRepository:
        """Attach a repository: its staged writes are applied on commit, discarded on rollback."""
        self._repositories.append(repository)
        return repository

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.rollback()

    async def commit(self) -> list[DomainEvent]:
        events = self.tracker.drain()
        for repository in self._repositories:
            repository.apply()
        self.committed = events
        return events

    async def rollback(self) -> None:
        for repository in self._repositories:
            repository.discard()
