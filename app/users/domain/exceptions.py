"""The ways a user use case can be refused, each with a stable error code."""

from __future__ import annotations

from uuid import UUID

from app.building_blocks.domain.exceptions import (
    BusinessRuleViolationError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
)


class UserNotFound(NotFoundError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"User '{user_id}' not found", code="USER_NOT_FOUND", user_id=str(user_id))


class EmailAlreadyRegistered(ConflictError):
    def __init__(self, email: str) -> None:
        super().__init__(f"A user with email '{email}' already exists", code="EMAIL_ALREADY_REGISTERED")


class UserAlreadyDeactivated(BusinessRuleViolationError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"User '{user_id}' is already deactivated", code="USER_ALREADY_DEACTIVATED")


class UserAlreadyActive(BusinessRuleViolationError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"User '{user_id}' is already active", code="USER_ALREADY_ACTIVE")


class UserIsDeactivated(BusinessRuleViolationError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__(
            f"User '{user_id}' is deactivated; reactivate it before changing its profile",
            code="USER_DEACTIVATED",
        )


class UserVersionMismatch(PreconditionFailedError):
    def __init__(self, user_id: UUID, current_version: int) -> None:
        super().__init__(
            f"User '{user_id}' is at version {current_version}, which If-Match does not name; "
            "fetch it again and retry with its current ETag",
            code="VERSION_MISMATCH",
            current_version=current_version,
        )
