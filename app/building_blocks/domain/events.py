"""Domain events (inside one bounded context) and integration events (published to others)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from app.building_blocks.domain.identifiers import uuid7


def utc_now() -> datetime:
    return datetime.now(UTC)


class DomainEvent(BaseModel):
    """Something that happened in the domain, recorded by an aggregate and dispatched on commit."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID = Field(default_factory=uuid7)
    occurred_at: datetime = Field(default_factory=utc_now)

    @property
    def event_name(self) -> str:
        return type(self).__name__


class IntegrationEvent(BaseModel):
    """A fact published to other services. Its schema is a public contract, versioned explicitly.

    Subclasses set ``event_type`` (stable, e.g. ``"users.user_registered"``) and ``event_version``.
    Mapping from domain events is explicit (see the messaging building blocks) so the wire contract
    never changes by accident when the domain model does.
    """

    model_config = ConfigDict(frozen=True)

    event_type: ClassVar[str] = ""
    event_version: ClassVar[int] = 1

    event_id: UUID = Field(default_factory=uuid7)
    occurred_at: datetime = Field(default_factory=utc_now)
    correlation_id: str | None = None
    causation_id: str | None = None
