"""Entities (identity and lifecycle) and aggregate roots (consistency boundary + recorded events)."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from app.building_blocks.domain.events import DomainEvent
from app.building_blocks.domain.identifiers import uuid7


class BaseEntity(BaseModel):
    """An object with identity: two entities are equal when their ids are, whatever their state."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    id: UUID = Field(default_factory=uuid7)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self), self.id))


class AggregateRoot(BaseEntity):
    """The entry point to a cluster of entities; the unit that a repository loads and saves.

    ``version`` supports optimistic concurrency: repositories update a row only if its version is
    the one that was loaded, then increment it. Domain events recorded by behaviour methods are
    drained by the unit of work when it commits.
    """

    version: int = 0
    _events: list[DomainEvent] = PrivateAttr(default_factory=list)

    def record_event(self, event: DomainEvent) -> None:
        self._events.append(event)

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        return tuple(self._events)

    def pull_events(self) -> list[DomainEvent]:
        """Return and forget the recorded events (called once, by the unit of work)."""
        events, self._events = self._events, []
        return events
