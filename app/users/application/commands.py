"""Commands: the ways a user can be changed. Each names its intent and carries plain data."""

from __future__ import annotations

from uuid import UUID

from app.building_blocks.application.commands import Command
from app.users.application.read_models import UserDetails


class RegisterUser(Command[UserDetails]):
    email: str
    name: str


class VersionedUserCommand(Command[UserDetails]):
    """A change to an existing user. ``expected_versions`` comes from ``If-Match``: when given,
    the change applies only if the user's current version is one of them."""

    user_id: UUID
    expected_versions: frozenset[int] | None = None


class UpdateUserProfile(VersionedUserCommand):
    name: str | None = None
    email: str | None = None


class DeactivateUser(VersionedUserCommand):
    pass


class ReactivateUser(VersionedUserCommand):
    pass


class DeleteUser(Command[None]):
    user_id: UUID
    expected_versions: frozenset[int] | None = None
