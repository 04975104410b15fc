"""The unit-of-work port: one atomic business transaction, implemented in infrastructure."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from app.building_blocks.domain.events import DomainEvent


class UnitOfWork(Protocol):
    """Opened per request by the transaction behaviour; committed only for commands.

    ``read_only`` is set before entering: a query's unit of work may then use a cheaper
    transaction (on SQLite it does not take the write lock).
    """

    read_only: bool

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> list[DomainEvent]:
        """Persist everything atomically and return the domain events that were committed."""
        ...

    async def rollback(self) -> None: ...
