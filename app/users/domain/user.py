"""The ``User`` aggregate: every change goes through a method that checks the rules and records
what happened."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import field_validator

from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.domain.events import utc_now
from app.building_blocks.domain.exceptions import DomainValidationError
from app.users.domain.email import Email
from app.users.domain.events import (
    UserDeactivated,
    UserDeleted,
    UserEmailChanged,
    UserProfileUpdated,
    UserReactivated,
    UserRegistered,
)
from app.users.domain.exceptions import (
    UserAlreadyActive,
    UserAlreadyDeactivated,
    UserIsDeactivated,
)

NAME_MAX_LENGTH = 200


class UserStatus(StrEnum):
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


def clean_name(raw: str) -> str:
    """Trim and check a display name: 1 to 200 printable characters."""
    name = " ".join(raw.split())
    if not name:
        raise DomainValidationError("name must not be empty", field="name")
    if len(name) > NAME_MAX_LENGTH:
        raise DomainValidationError(f"name must be at most {NAME_MAX_LENGTH} characters", field="name")
    if not name.isprintable():
        raise DomainValidationError("name must not contain control characters", field="name")
    return name


class User(AggregateRoot):
    email: Email
    name: str
    status: UserStatus = UserStatus.ACTIVE
    created_at: datetime
    updated_at: datetime

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return clean_name(value)

    @classmethod
    def register(cls, *, email: Email, name: str, now: datetime | None = None) -> User:
        moment = now or utc_now()
        user = cls(email=email, name=name, created_at=moment, updated_at=moment)
        user.record_event(UserRegistered(user_id=user.id, email=str(user.email), name=user.name))
        return user

    @property
    def is_active(self) -> bool:
        return self.status is UserStatus.ACTIVE

    def update_profile(
        self, *, name: str | None = None, email: Email | None = None, now: datetime | None = None
    ) -> bool:
        """Apply the given changes; return whether anything actually changed."""
        if not self.is_active:
            raise UserIsDeactivated(self.id)
        changed = False
        if name is not None and clean_name(name) != self.name:
            self.name = name
            self.record_event(UserProfileUpdated(user_id=self.id, name=self.name))
            changed = True
        if email is not None and email != self.email:
            old = self.email
            self.email = email
            self.record_event(UserEmailChanged(user_id=self.id, old_email=str(old), new_email=str(email)))
            changed = True
        if changed:
            self.updated_at = now or utc_now()
        return changed

    def deactivate(self, *, now: datetime | None = None) -> None:
        if not self.is_active:
            raise UserAlreadyDeactivated(self.id)
        self.status = UserStatus.DEACTIVATED
        self.updated_at = now or utc_now()
        self.record_event(UserDeactivated(user_id=self.id))

    def reactivate(self, *, now: datetime | None = None) -> None:
        if self.is_active:
            raise UserAlreadyActive(self.id)
        self.status = UserStatus.ACTIVE
        self.updated_at = now or utc_now()
        self.record_event(UserReactivated(user_id=self.id))

    def delete(self) -> None:
        """Mark for removal; the repository deletes the row, the event tells everyone else."""
        self.record_event(UserDeleted(user_id=self.id, email=str(self.email)))
