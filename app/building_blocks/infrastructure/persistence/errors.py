"""Turn driver-specific database errors into exceptions the layers above can reason about.

- unique violations → :class:`UniqueConstraintViolation` (a ``ConflictError``: 409);
- values the database refuses as data → :class:`UnstorableValueError` (400);
- failures after which the same work may succeed later (a lock or statement timeout, an exhausted
  pool, a lost, refused or terminated connection, see :func:`as_unavailable`) →
  ``TemporarilyUnavailableError`` (503 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.domain.exceptions import ConflictError, DomainValidationError

logger = logging.getLogger("app.database")

_PG_KEY = re.compile(r"Key \((?P<columns>[^)]*)\)=")
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<columns>.+)$")
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
# PostgreSQL SQLSTATEs (appendix A of its manual) after which the same work may succeed later:
# lock_not_available (lock_timeout), query_canceled (statement_timeout), serialization_failure,
# deadlock_detected: another transaction was in the way.
_PG_BUSY = {"55P03", "57014", "40001", "40P01"}
# admin_shutdown (pg_terminate_backend), crash_shutdown, cannot_connect_now (starting up or
# shutting down), database_dropped: the server ended or refused the session.
_PG_UNREACHABLE = {"57P01", "57P02", "57P03", "57P04"}
# Classes: 08 connection exception, 28 invalid authorization (the service cannot log in, e.g.
# rotated credentials), 58 system error (I/O). Class 53 is insufficient resources (53300
# too_many_connections, disk full, out of memory).
_PG_UNREACHABLE_CLASSES = ("08", "28", "58")
_PG_EXHAUSTED_CLASS = "53"
_CLOSED = "connection is closed"  # asyncpg's InterfaceError once the socket is gone


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


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error, raw (asyncpg raises connect errors unwrapped) or wrapped by
    SQLAlchemy (whose asyncpg adapter keeps the original as the cause of its own error)."""
    candidates: list[object] = [error]
    if isinstance(error, StatementError) and error.orig is not None:
        candidates += [error.orig, error.orig.__cause__]
    for candidate in candidates:
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def is_data_error(error: BaseException) -> bool:
    return isinstance(error, DataError) or (sqlstate(error) or "").startswith("22")


def as_unavailable(error: BaseException) -> TemporarilyUnavailableError | None:
    """Tell a database outage from a failure of the work itself.

    Returns a ``TemporarilyUnavailableError`` (503 with ``Retry-After`` over HTTP) when the same
    work may succeed later, unchanged: the error itself if it already is one. ``None`` means the
    error is the work's own (a constraint, a bug, bad data) and retrying will not help. Accepts
    SQLAlchemy's errors and the raw driver errors it lets through (asyncpg's connect errors):

    - busy, retry after 1 s: lock or statement timeout (55P03, 57014), serialization failure
      (40001), deadlock (40P01), an exhausted pool, SQLite's busy/locked;
    - out of resources, 5 s: SQLSTATE class 53 (e.g. 53300 too_many_connections);
    - unreachable, 5 s: class 08 (connection exception), 57P01-57P04 (terminated by an operator,
      crash, starting up, database dropped), class 28 (cannot log in), class 58 (system error,
      I/O), a connection SQLAlchemy invalidated, ``OSError`` (refused, reset, connect timeout).

    The API renders the result as a 503; a consumer can use it to pause and retry instead of
    dead-lettering a message that was never the problem.
    """
    if isinstance(error, TemporarilyUnavailableError):
        return error
    if isinstance(error, PoolTimeoutError):
        return TemporarilyUnavailableError("all database connections are busy; retry shortly")
    state = sqlstate(error) or ""
    # The driver's own message: SQLAlchemy's adds the statement and its parameters (user input).
    message = str(error.orig) if isinstance(error, StatementError) else str(error)
    if state in _PG_BUSY or any(text in message for text in _SQLITE_BUSY):
        return TemporarilyUnavailableError("the database is busy; retry shortly")
    if state.startswith(_PG_EXHAUSTED_CLASS):
        return TemporarilyUnavailableError("the database is out of resources; retry shortly", retry_after=5)
    unreachable = state in _PG_UNREACHABLE or state.startswith(_PG_UNREACHABLE_CLASSES)
    lost = (isinstance(error, DBAPIError) and error.connection_invalidated) or _CLOSED in message
    if unreachable or lost or isinstance(error, OSError):
        return unreachable_database()
    return None


def as_service_error(error: BaseException) -> Exception | None:
    """What a failed statement means above the database, on SQLAlchemy's path and the driver's
    alike: a value refused as data is an :class:`UnstorableValueError` (400, logged), an outage a
    ``TemporarilyUnavailableError`` (see :func:`as_unavailable`); ``None``: the error stays."""
    if is_data_error(error):
        refused = error.orig if isinstance(error, StatementError) else error  # without the parameters
        logger.warning("the database refused a value: %s", str(refused)[:200])
        return UnstorableValueError()
    return as_unavailable(error)


def unreachable_database() -> TemporarilyUnavailableError:
    """The 503 for a database that cannot be reached or a connection that was lost."""
    return TemporarilyUnavailableError("the database cannot be reached; retry shortly", retry_after=5)


def translate_integrity_error(error: IntegrityError) -> UniqueConstraintViolation | None:
    """Return a :class:`UniqueConstraintViolation` for unique errors, ``None`` for other kinds."""
    orig = error.orig
    cause = getattr(orig, "__cause__", None) or orig  # asyncpg's error (the kit's driver path: orig)
    if sqlstate(error) == "23505":  # PostgreSQL unique_violation
        detail = getattr(cause, "detail", None) or str(orig)
        match = _PG_KEY.search(detail or "")
        columns = tuple(c.strip() for c in match["columns"].split(",")) if match else ()
        return UniqueConstraintViolation(columns=columns, constraint=getattr(cause, "constraint_name", None))
    match = _SQLITE_UNIQUE.search(str(orig))
    if match:
        columns = tuple(part.strip().rsplit(".", 1)[-1] for part in match["columns"].split(","))
        return UniqueConstraintViolation(columns=columns, constraint=None)
    return None
