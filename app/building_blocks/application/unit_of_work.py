"""The unit-of-work port: one atomic business transaction, implemented in infrastructure."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.domain.events import DomainEvent


class UnitOfWork(Protocol):
    """Opened per request by the mediator; committed by the transaction behaviour for commands."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def track(self, aggregate: AggregateRoot) -> None:
        """Remember an aggregate whose events must be collected on commit."""

    async def commit(self) -> list[DomainEvent]:
        """Persist everything atomically and return the domain events that were committed."""
        ...

    async def rollback(self) -> None: ...
