"""Domain events (inside one bounded context) and integration events (published to others)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, computed_field

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

    Subclasses name their type and version as class constants, which also travel in the JSON::

        class UserRegisteredIntegrationEvent(IntegrationEvent):
            EVENT_TYPE: ClassVar[str] = "users.user_registered"
            EVENT_VERSION: ClassVar[int] = 1
            AGGREGATE_TYPE: ClassVar[str] = "user"
            user_id: UUID

    Compatible changes (a new optional field) keep the version. A breaking change is a new class
    with ``EVENT_VERSION = 2`` on a new topic (``...users.v2``), so existing consumers keep reading
    the old one until they move. Mapping from domain events is explicit (see the messaging
    building blocks) so the wire contract never changes by accident when the domain model does.
    """

    model_config = ConfigDict(frozen=True)

    EVENT_TYPE: ClassVar[str] = ""
    EVENT_VERSION: ClassVar[int] = 1
    AGGREGATE_TYPE: ClassVar[str] = ""

    event_id: UUID = Field(default_factory=uuid7)
    occurred_at: datetime = Field(default_factory=utc_now)
    aggregate_id: str = ""
    correlation_id: str | None = None
    causation_id: str | None = None
    source: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_type(self) -> str:
        return type(self).EVENT_TYPE

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_version(self) -> int:
        return type(self).EVENT_VERSION

    @computed_field  # type: ignore[prop-decorator]
    @property
    def aggregate_type(self) -> str:
        return type(self).AGGREGATE_TYPE

    @classmethod
    def versioned_type(cls) -> str:
        """The type as it travels (CloudEvents ``type``): ``users.user_registered.v1``."""
        return f"{cls.EVENT_TYPE}.v{cls.EVENT_VERSION}"
