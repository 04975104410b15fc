"""Domain exceptions: what went wrong in business terms.

The API layer maps each family to an HTTP status (see ``api.exceptions``); the domain never knows
about HTTP. ``code`` is a stable, machine-readable identifier clients can branch on.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every business error."""

    default_code = "DOMAIN_ERROR"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details


class DomainValidationError(DomainError):
    """A value breaks an invariant of a value object or entity (bad input, in HTTP terms 400)."""

    default_code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class NotFoundError(DomainError):
    """The addressed entity does not exist."""

    default_code = "NOT_FOUND"


class ConflictError(DomainError):
    """The request conflicts with the current state, e.g. a uniqueness rule."""

    default_code = "CONFLICT"


class BusinessRuleViolationError(ConflictError):
    """An operation is not allowed in the entity's current state."""

    default_code = "BUSINESS_RULE_VIOLATION"


class ConcurrencyError(ConflictError):
    """Another writer changed the aggregate since it was loaded (optimistic concurrency)."""

    default_code = "CONCURRENCY_CONFLICT"


class PreconditionFailedError(DomainError):
    """The caller's expected version (e.g. from ``If-Match``) does not match the current one."""

    default_code = "PRECONDITION_FAILED"
