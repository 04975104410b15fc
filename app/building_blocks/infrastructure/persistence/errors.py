"""Turn driver-specific database errors into exceptions the layers above can reason about.

- unique violations → :class:`UniqueConstraintViolation` (a ``ConflictError``: 409);
- values the database refuses as data → :class:`UnstorableValueError` (400);
- lock, busy, pool and connection failures → ``TemporarilyUnavailableError`` (503).
"""

from __future__ import annotations

import re

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.domain.exceptions import ConflictError, DomainValidationError

_PG_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=")
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<columns>.+)$")
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
# lock_not_available (lock_timeout), query_canceled (statement_timeout), too_many_connections
_PG_UNAVAILABLE = {"55P03", "57014", "53300"}


class UniqueConstraintViolation(ConflictError):
    """An insert or update collided with a unique constraint.

    ``columns`` are bare column names on both backends (PostgreSQL reports the key, SQLite the
    ``table.column`` list); ``constraint`` is known on PostgreSQL only.
    """

    default_code = "UNIQUE_VIOLATION"

    def __init__(self, *, columns: tuple[str, ...], constraint: str | None) -> None:
        super().__init__(f"unique constraint violated on ({', '.join(columns) or '?'})")
        self.columns = columns
        self.constraint = constraint


class UnstorableValueError(DomainValidationError):
    """The database refused a value as data (SQLSTATE class 22: a NUL character, a number out of
    range...). Input validation should catch these first; this is the safety net that keeps such
    input a 400 instead of a 500."""

    default_code = "INVALID_VALUE"

    def __init__(self) -> None:
        super().__init__(
            "A value in the request cannot be stored or compared "
            "(for example it contains a NUL character or is out of range)"
        )


def _sqlstate(error: BaseException) -> str | None:
    if not isinstance(error, StatementError):
        return None
    orig = error.orig
    cause = orig.__cause__ if orig is not None else None
    state = getattr(orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_data_error(error: BaseException) -> bool:
    return isinstance(error, DataError) or (_sqlstate(error) or "").startswith("22")


def as_unavailable(error: BaseException) -> TemporarilyUnavailableError | None:
    """A ``TemporarilyUnavailableError`` when retrying later may succeed, else ``None``."""
    if isinstance(error, PoolTimeoutError):
        return TemporarilyUnavailableError("all database connections are busy; retry shortly")
    if _sqlstate(error) in _PG_UNAVAILABLE or any(text in str(error) for text in _SQLITE_BUSY):
        return TemporarilyUnavailableError("the database is busy; retry shortly")
    lost = isinstance(error, DBAPIError) and error.connection_invalidated
    if lost or isinstance(error, OSError) or (_sqlstate(error) or "").startswith("08"):
        return TemporarilyUnavailableError("the database cannot be reached; retry shortly", retry_after=5)
    return None


def translate_integrity_error(error: IntegrityError) -> UniqueConstraintViolation | None:
    """Return a :class:`UniqueConstraintViolation` for unique errors, ``None`` for other kinds."""
    orig = error.orig
    cause = getattr(orig, "__cause__", None)
    if _sqlstate(error) == "23505":  # PostgreSQL unique_violation
        detail = getattr(cause, "detail", None) or str(orig)
        match = _PG_KEY.search(detail or "")
        columns = tuple(c.strip() for c in match["columns"].split(",")) if match else ()
        return UniqueConstraintViolation(columns=columns, constraint=getattr(cause, "constraint_name", None))
    match = _SQLITE_UNIQUE.search(str(orig))
    if match:
        columns = tuple(part.strip().rsplit(".", 1)[-1] for part in match["columns"].split(","))
        return UniqueConstraintViolation(columns=columns, constraint=None)
    return None
