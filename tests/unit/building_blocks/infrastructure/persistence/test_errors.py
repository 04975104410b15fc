"""Which database failures are outages (503, retry later) and which are the work's own.

The errors are built the way the drivers raise them: asyncpg's class for each SQLSTATE, raw (as
connect errors arrive) or wrapped the way SQLAlchemy's asyncpg adapter wraps a statement's error.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.infrastructure.persistence.errors import as_unavailable

ADAPTER = dialect.import_dbapi()  # SQLAlchemy's DB-API facade over asyncpg


def postgres_error(sqlstate: str, message: str = "message") -> Exception:
    error: Exception = asyncpg.PostgresError.new({"C": sqlstate, "M": message, "S": "ERROR"})
    return error


def wrapped(error: Exception, *, params: dict[str, Any] | None = None, invalidated: bool = False) -> Any:
    """As a statement raises it: the adapter's error (caused by asyncpg's) inside SQLAlchemy's."""
    translate = ADAPTER._asyncpg_error_translate
    kind = next((translate[cls] for cls in type(error).__mro__ if cls in translate), ADAPTER.Error)
    adapted = kind(f"{type(error)}: {error}")
    adapted.sqlstate = getattr(error, "sqlstate", None)
    adapted.__cause__ = error
    return DBAPIError.instance(
        "SELECT 1", params or {}, adapted, ADAPTER.Error, connection_invalidated=invalidated
    )


OUTAGES = {
    # busy: another transaction or a timeout was in the way; retry at once
    "55P03": 1,  # lock_not_available (lock_timeout)
    "57014": 1,  # query_canceled (statement_timeout)
    "40001": 1,  # serialization_failure
    "40P01": 1,  # deadlock_detected
    # out of resources
    "53000": 5,
    "53100": 5,  # disk_full
    "53200": 5,  # out_of_memory
    "53300": 5,  # too_many_connections
    # unreachable: the connection is gone, refused, or cannot log in
    "08000": 5,
    "08003": 5,  # connection_does_not_exist ("closed in the middle of operation")
    "08006": 5,  # connection_failure
    "57P01": 5,  # admin_shutdown (pg_terminate_backend)
    "57P02": 5,  # crash_shutdown
    "57P03": 5,  # cannot_connect_now
    "57P04": 5,  # database_dropped
    "28000": 5,  # invalid_authorization_specification
    "28P01": 5,  # invalid_password
    "58000": 5,  # system_error
    "58030": 5,  # io_error
}
THE_WORKS_OWN = ["23505", "23503", "22P02", "42P01", "42703", "0A000", "XX000", "P0001", "25P02", "3F000"]


@pytest.mark.parametrize(("sqlstate", "retry_after"), OUTAGES.items())
@pytest.mark.parametrize("raised", ["by a statement", "raw, as on connect"])
def test_outage_sqlstates_are_temporarily_unavailable(sqlstate: str, retry_after: int, raised: str) -> None:
    error = postgres_error(sqlstate)
    unavailable = as_unavailable(wrapped(error) if raised == "by a statement" else error)
    assert isinstance(unavailable, TemporarilyUnavailableError), sqlstate
    assert unavailable.retry_after == retry_after


@pytest.mark.parametrize("sqlstate", THE_WORKS_OWN)
def test_errors_of_the_work_itself_are_not_outages(sqlstate: str) -> None:
    assert as_unavailable(wrapped(postgres_error(sqlstate))) is None
    assert as_unavailable(postgres_error(sqlstate)) is None


def test_a_statement_cut_by_termination_is_unavailable() -> None:
    closed = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert as_unavailable(wrapped(closed)) is not None
    assert as_unavailable(closed) is not None
    gone = asyncpg.InterfaceError("connection is closed")
    assert as_unavailable(wrapped(gone)) is not None
    assert as_unavailable(gone) is not None


def test_a_connection_sqlalchemy_invalidated_is_unavailable() -> None:
    lost = wrapped(RuntimeError("unexpected end of stream"), invalidated=True)
    assert as_unavailable(lost) is not None
    assert as_unavailable(wrapped(RuntimeError("unexpected end of stream"))) is None


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),  # asyncpg's connect timeout
        PoolTimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")),
    ],
    ids=["refused", "reset", "connect timeout", "pool timeout", "sqlite locked"],
)
def test_unreachable_or_busy_without_a_sqlstate(error: Exception) -> None:
    assert isinstance(as_unavailable(error), TemporarilyUnavailableError)


def test_an_outage_already_translated_is_returned_as_it_is() -> None:
    error = TemporarilyUnavailableError("the database is busy; retry shortly", retry_after=3)
    assert as_unavailable(error) is error


def test_words_in_the_parameters_do_not_make_an_outage() -> None:
    """The statement's parameters are user input; only the driver's message counts."""
    for text in ("connection is closed", "database is locked"):
        assert as_unavailable(wrapped(postgres_error("23505"), params={"name": text})) is None


@pytest.mark.parametrize("error", [ValueError("bad"), RuntimeError("bug"), KeyError("id")])
def test_other_exceptions_are_not_outages(error: Exception) -> None:
    assert as_unavailable(error) is None
