"""The repository port: collection-like access to aggregates, implemented in infrastructure."""

from __future__ import annotations

from typing import Protocol, TypeVar
from uuid import UUID

from app.building_blocks.domain.entities import AggregateRoot

TAggregate = TypeVar("TAggregate", bound=AggregateRoot)


class Repository(Protocol[TAggregate]):
    async def get(self, id: UUID, *, for_update: bool = False) -> TAggregate | None: ...

    async def add(self, aggregate: TAggregate) -> None: ...

    async def update(self, aggregate: TAggregate) -> None: ...

    async def remove(self, aggregate: TAggregate) -> None: ...
