"""The users context's public contract: integration events and their mapping from domain events.

These classes are what other services consume (topic ``<service>.users.v1``). Change them only
compatibly (add optional fields); a breaking change is a new class with ``EVENT_VERSION = 2``
published to a new topic.
"""

from __future__ import annotations

from typing import ClassVar, Self
from uuid import UUID

from pydantic import model_validator

from app.building_blocks.domain.events import IntegrationEvent
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.users.domain import events as domain


class UserIntegrationEvent(IntegrationEvent):
    AGGREGATE_TYPE: ClassVar[str] = "user"
    user_id: UUID

    @model_validator(mode="after")
    def _keyed_by_user(self) -> Self:
        if not self.aggregate_id:
            object.__setattr__(self, "aggregate_id", str(self.user_id))
        return self


class UserRegisteredIntegrationEvent(UserIntegrationEvent):
    EVENT_TYPE: ClassVar[str] = "users.user_registered"
    email: str
    name: str


class UserProfileUpdatedIntegrationEvent(UserIntegrationEvent):
    EVENT_TYPE: ClassVar[str] = "users.user_profile_updated"
    name: str


class UserEmailChangedIntegrationEvent(UserIntegrationEvent):
    EVENT_TYPE: ClassVar[str] = "users.user_email_changed"
    old_email: str
    new_email: str


class UserDeactivatedIntegrationEvent(UserIntegrationEvent):
    EVENT_TYPE: ClassVar[str] = "users.user_deactivated"


class UserReactivatedIntegrationEvent(UserIntegrationEvent):
    EVENT_TYPE: ClassVar[str] = "users.user_reactivated"


class UserDeletedIntegrationEvent(UserIntegrationEvent):
    EVENT_TYPE: ClassVar[str] = "users.user_deleted"


INTEGRATION_EVENTS: dict[str, type[UserIntegrationEvent]] = {
    event.versioned_type(): event
    for event in (
        UserRegisteredIntegrationEvent,
        UserProfileUpdatedIntegrationEvent,
        UserEmailChangedIntegrationEvent,
        UserDeactivatedIntegrationEvent,
        UserReactivatedIntegrationEvent,
        UserDeletedIntegrationEvent,
    )
}
"""Wire type (``users.user_registered.v1``) → class, for consumers."""


def register_mappings(mapper: IntegrationEventMapper) -> None:
    """Every user domain event leaves the service; each maps field by field, on purpose."""
    mapper.register(
        domain.UserRegistered,
        lambda e: UserRegisteredIntegrationEvent(user_id=e.user_id, email=e.email, name=e.name),
    )
    mapper.register(
        domain.UserProfileUpdated,
        lambda e: UserProfileUpdatedIntegrationEvent(user_id=e.user_id, name=e.name),
    )
    mapper.register(
        domain.UserEmailChanged,
        lambda e: UserEmailChangedIntegrationEvent(
            user_id=e.user_id, old_email=e.old_email, new_email=e.new_email
        ),
    )
    mapper.register(domain.UserDeactivated, lambda e: UserDeactivatedIntegrationEvent(user_id=e.user_id))
    mapper.register(domain.UserReactivated, lambda e: UserReactivatedIntegrationEvent(user_id=e.user_id))
    mapper.register(domain.UserDeleted, lambda e: UserDeletedIntegrationEvent(user_id=e.user_id))
