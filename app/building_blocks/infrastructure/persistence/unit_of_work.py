"""The SQLAlchemy unit of work: one session, one transaction, events collected on commit."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.domain.events import DomainEvent
from app.building_blocks.infrastructure.persistence.errors import translate_integrity_error


class SqlAlchemyUnitOfWork:
    """Opens a session on enter, rolls back on exit unless committed.

    Subclasses attach their repositories in :meth:`_open` (e.g. ``self.users = ...``). On commit
    the events recorded by every aggregate the repositories touched are drained and handed to
    :meth:`_before_commit`, still inside the transaction: that is where the transactional outbox
    stores them, so an event exists if and only if the change that raised it does.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        self._session: AsyncSession | None = None
        self._seen: dict[int, AggregateRoot] = {}

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open; use 'async with uow:'")
        return self._session

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("a unit of work is opened once")
        self._session = self._session_factory()
        self._seen = {}
        self._open(self._session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if session.in_transaction():
                await session.rollback()
        finally:
            await session.close()

    def _open(self, session: AsyncSession) -> None:
        """Hook: create repositories bound to ``session`` and to :meth:`track`."""

    async def _before_commit(self, events: list[DomainEvent]) -> None:
        """Hook: runs inside the transaction with the events about to be committed."""

    def track(self, aggregate: AggregateRoot) -> None:
        self._seen[id(aggregate)] = aggregate

    def collect_events(self) -> list[DomainEvent]:
        events = [event for aggregate in self._seen.values() for event in aggregate.pull_events()]
        events.sort(key=lambda event: event.occurred_at)
        return events

    async def commit(self) -> list[DomainEvent]:
        events = self.collect_events()
        try:
            await self._before_commit(events)
            await self.session.commit()
        except IntegrityError as error:
            violation = translate_integrity_error(error)
            if violation is None:
                raise
            raise violation from error
        return events

    async def rollback(self) -> None:
        await self.session.rollback()
