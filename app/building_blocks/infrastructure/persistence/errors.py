"""Turn driver-specific integrity errors into one exception repositories can reason about."""

from __future__ import annotations

import re

from sqlalchemy.exc import DataError, IntegrityError, StatementError

from app.building_blocks.domain.exceptions import ConflictError, DomainValidationError

_PG_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=")
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<columns>.+)$")


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


def is_data_error(error: BaseException) -> bool:
    if isinstance(error, DataError):
        return True
    if not isinstance(error, StatementError):
        return False
    orig = error.orig
    cause = orig.__cause__ if orig is not None else None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


def translate_integrity_error(error: IntegrityError) -> UniqueConstraintViolation | None:
    """Return a :class:`UniqueConstraintViolation` for unique errors, ``None`` for other kinds."""
    orig = error.orig
    cause = getattr(orig, "__cause__", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    if sqlstate == "23505":  # PostgreSQL unique_violation
        detail = getattr(cause, "detail", None) or str(orig)
        match = _PG_KEY.search(detail or "")
        columns = tuple(c.strip() for c in match["columns"].split(",")) if match else ()
        return UniqueConstraintViolation(columns=columns, constraint=getattr(cause, "constraint_name", None))
    match = _SQLITE_UNIQUE.search(str(orig))
    if match:
        columns = tuple(part.strip().rsplit(".", 1)[-1] for part in match["columns"].split(","))
        return UniqueConstraintViolation(columns=columns, constraint=None)
    return None
