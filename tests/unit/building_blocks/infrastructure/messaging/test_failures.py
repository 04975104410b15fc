"""classify_failure: which failures of a consumer's handler are outages (keep the message, pause,
retry until it ends) and which are poison (a few attempts, then the dead-letter topic).

The database errors are built the way the drivers raise them: asyncpg makes its exception from
the server's error fields (``PostgresError.new``), SQLAlchemy's asyncpg adapter translates it
(keeping it as the cause) and the engine wraps that (``DBAPIError.instance``); connect errors
reach the caller raw. No database is involved: this is the pure mapping.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.domain.exceptions import ConflictError, DomainValidationError, NotFoundError
from app.building_blocks.infrastructure.messaging import FailureKind, classify_failure
from app.building_blocks.infrastructure.messaging.consumer import MalformedMessageError
from app.building_blocks.infrastructure.messaging.transport import TransportUnavailableError
from app.building_blocks.infrastructure.persistence.errors import UnstorableValueError, as_unavailable
from app.users.integration_events import INTEGRATION_EVENTS

OUTAGE, POISON = FailureKind.OUTAGE, FailureKind.POISON
_DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def server_error(sqlstate: str, message: str) -> asyncpg.PostgresError:
    """An asyncpg exception as its protocol builds one from the server's ErrorResponse."""
    error = asyncpg.PostgresError.new({"S": "ERROR", "V": "ERROR", "C": sqlstate, "M": message})
    assert error.sqlstate == sqlstate
    return error


class _AsyncpgConnection:
    """The one thing the adapter asks the asyncpg connection while translating an error."""

    def __init__(self, closed: bool) -> None:
        self.closed = closed

    def is_closed(self) -> bool:
        return self.closed


def through_sqlalchemy(error: Exception, *, invalidated: bool = False) -> StatementError:
    """What a statement raises through SQLAlchemy: the adapter's translation, wrapped by the engine."""
    adapter = AsyncAdapt_asyncpg_connection(_DBAPI, _AsyncpgConnection(closed=invalidated))
    try:
        adapter._handle_exception(error)
    except _DBAPI.Error as translated:
        wrapped = DBAPIError.instance(
            "INSERT INTO inbox (message_id) VALUES ($1)",
            ("m-1",),
            translated,
            _DBAPI.Error,
            connection_invalidated=invalidated,
        )
        wrapped.__cause__ = translated
        return wrapped
    raise AssertionError("the adapter did not translate the error")


def sqlite_error(message: str) -> StatementError:
    return DBAPIError.instance("INSERT INTO inbox", (), sqlite3.OperationalError(message), sqlite3.Error)


def validation_error(payload: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        INTEGRATION_EVENTS["users.user_registered.v1"].model_validate_json(json.dumps(payload))
    return caught.value


def raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        raise error from cause
    except BaseException as raised:
        return raised


def raised_during(error: BaseException, handled: BaseException) -> BaseException:
    try:
        try:
            raise handled
        except type(handled):
            raise error  # noqa: B904 - the point: not "from"
    except BaseException as raised:
        return raised


def handler_bug() -> BaseException:
    try:
        payload: dict[str, str] = {}
        payload["user_id"]  # the bug
    except KeyError as error:
        return error
    raise AssertionError


LOCK_TIMEOUT = server_error("55P03", "canceling statement due to lock timeout")
LISTENER_RESULT = as_unavailable(through_sqlalchemy(LOCK_TIMEOUT))
assert LISTENER_RESULT is not None

OUTAGES: dict[str, BaseException] = {
    # what the engine's handle_error listener already made of a driver error
    "translated by the engine": TemporarilyUnavailableError("the database is busy; retry shortly"),
    "what the engine's listener makes of a lock timeout": LISTENER_RESULT,
    "lock timeout": through_sqlalchemy(LOCK_TIMEOUT),
    "statement timeout": through_sqlalchemy(
        server_error("57014", "canceling statement due to statement timeout")
    ),
    "serialization failure": through_sqlalchemy(
        server_error("40001", "could not serialize access due to concurrent update")
    ),
    "deadlock": through_sqlalchemy(server_error("40P01", "deadlock detected")),
    "terminated by an administrator": through_sqlalchemy(
        server_error("57P01", "terminating connection due to administrator command"), invalidated=True
    ),
    "server shutting down, raw at connect": server_error("57P03", "the database system is shutting down"),
    "closed mid-statement": through_sqlalchemy(
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        invalidated=True,
    ),
    "closed connection, raw": asyncpg.exceptions.InterfaceError("connection is closed"),
    "cannot log in, raw at connect": server_error("28000", 'role "worker" is not permitted to log in'),
    "wrong password, raw at connect": server_error(
        "28P01", 'password authentication failed for user "worker"'
    ),
    "too many connections, raw at connect": server_error("53300", "sorry, too many clients already"),
    "disk full": through_sqlalchemy(server_error("53100", "could not extend file: No space left on device")),
    "I/O error": through_sqlalchemy(server_error("58030", "could not read block 0")),
    "connection refused, raw at connect": ConnectionRefusedError(
        111, "Connect call failed ('127.0.0.1', 5432)"
    ),
    "connection reset": ConnectionResetError(104, "Connection reset by peer"),
    "connect timeout": TimeoutError(),
    "pool exhausted": PoolTimeoutError(
        "QueuePool limit of size 10 overflow 10 reached, connection timed out"
    ),
    "SQLite busy": sqlite_error("database is locked"),
    "transport unavailable": TransportUnavailableError("Kafka is unreachable"),
    "plain OSError": OSError("network is unreachable"),
    "raised from an outage": raised_from(RuntimeError("projection failed"), LOCK_TIMEOUT),
}

POISONS: dict[str, BaseException] = {
    "invalid payload": validation_error({"user_id": "not-a-uuid"}),
    "invalid payload quoting an outage's words": validation_error(
        {"user_id": "database is locked; connection is closed"}
    ),
    "undecodable value": ValueError("Expecting value: line 1 column 1 (char 0)"),
    "malformed message": MalformedMessageError("the message has no ce_id header"),
    "domain validation": DomainValidationError("name must not be empty"),
    "domain conflict": ConflictError("email taken"),
    "not found": NotFoundError("no such account"),
    "handler bug": handler_bug(),
    "type error": TypeError("'NoneType' object is not subscriptable"),
    "refused value, as the engine translates it": UnstorableValueError(),
    "refused value": through_sqlalchemy(
        server_error("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
    ),
    "number out of range": through_sqlalchemy(server_error("22003", "integer out of range")),
    "unique violation": through_sqlalchemy(
        server_error("23505", 'duplicate key value violates unique constraint "users_email_key"')
    ),
    "foreign key violation": through_sqlalchemy(
        server_error("23503", 'insert or update on table "x" violates foreign key constraint')
    ),
    "syntax error in a handler's SQL": through_sqlalchemy(
        server_error("42601", 'syntax error at or near "FORM"')
    ),
    "SQLite constraint": DBAPIError.instance(
        "INSERT", (), sqlite3.IntegrityError("UNIQUE constraint failed: users.email"), sqlite3.Error
    ),
    "raised while handling an outage, not from it": raised_during(
        RuntimeError("bug in an except"), LOCK_TIMEOUT
    ),
}


@pytest.mark.parametrize("error", OUTAGES.values(), ids=OUTAGES.keys())
def test_an_unavailable_dependency_is_an_outage(error: BaseException) -> None:
    assert classify_failure(error) is OUTAGE


@pytest.mark.parametrize("error", POISONS.values(), ids=POISONS.keys())
def test_a_failure_of_the_message_or_the_handler_is_poison(error: BaseException) -> None:
    assert classify_failure(error) is POISON


def test_a_fork_extends_the_classification_by_wrapping_it() -> None:
    class CircuitOpenError(Exception):
        pass

    def classify(error: BaseException) -> FailureKind:
        if isinstance(error, CircuitOpenError):
            return FailureKind.OUTAGE
        return classify_failure(error)

    assert classify_failure(CircuitOpenError()) is POISON
    assert classify(CircuitOpenError()) is OUTAGE
    assert classify(OUTAGES["lock timeout"]) is OUTAGE
    assert classify(POISONS["handler bug"]) is POISON


def test_a_refusal_is_neither_poison_nor_outage() -> None:
    """``MessageRefusedError``: dead-lettered at once (a webhook's 400), even when raised from an
    outage (an event that outlived its window while the endpoint was down)."""
    from app.building_blocks.infrastructure.http.errors import CircuitOpenError
    from app.building_blocks.infrastructure.messaging.failures import MessageRefusedError

    refused = MessageRefusedError("400", dlq_headers={"dlq_http_status": "400"})
    assert classify_failure(refused) is FailureKind.REFUSED
    refused.__cause__ = CircuitOpenError("webhooks", 30)
    assert classify_failure(refused) is FailureKind.REFUSED
    assert classify_failure(CircuitOpenError("webhooks", 30)) is OUTAGE  # an open breaker pauses
