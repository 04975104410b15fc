"""The user model: the ``User`` aggregate, the ``Email`` value object, events and errors."""

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
    EmailAlreadyRegistered,
    UserAlreadyActive,
    UserAlreadyDeactivated,
    UserIsDeactivated,
    UserNotFound,
    UserVersionMismatch,
)
from app.users.domain.repository import UserRepository
from app.users.domain.user import User, UserStatus

__all__ = [
    "Email",
    "EmailAlreadyRegistered",
    "User",
    "UserAlreadyActive",
    "UserAlreadyDeactivated",
    "UserDeactivated",
    "UserDeleted",
    "UserEmailChanged",
    "UserIsDeactivated",
    "UserNotFound",
    "UserProfileUpdated",
    "UserReactivated",
    "UserRegistered",
    "UserRepository",
    "UserStatus",
    "UserVersionMismatch",
]
