"""What can happen to a user. Recorded by ``User`` and committed with the change."""

from __future__ import annotations

from uuid import UUID

from app.building_blocks.domain.events import DomainEvent


class UserDomainEvent(DomainEvent):
    user_id: UUID


class UserRegistered(UserDomainEvent):
    email: str
    name: str


class UserProfileUpdated(UserDomainEvent):
    name: str


class UserEmailChanged(UserDomainEvent):
    old_email: str
    new_email: str


class UserDeactivated(UserDomainEvent):
    pass


class UserReactivated(UserDomainEvent):
    pass


class UserDeleted(UserDomainEvent):
    email: str
