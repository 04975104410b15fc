"""Why a consumer's attempt at a message failed: the message itself, or an outage.

The two call for opposite actions. A *poison* message fails the same way every time, so after
``KAFKA_RETRY_ATTEMPTS`` it goes to ``<topic>.dlq`` and its partition moves on. An *outage* of a
dependency the consumer owns (its database down, locked or out of connections) says nothing
about the message: dead-lettering it would only leave a gap for someone to replay by hand, so the
consumer keeps it, pauses its partitions and retries until the dependency is back.

Anything not known to be an outage is poison: an unknown failure is retried a few times and then
dead-lettered, where it is visible and replayable, rather than stalling its partitions forever.

A fork whose handlers depend on something else that can be down (an HTTP API behind a circuit
breaker, a cache) extends the classification by wrapping :func:`classify_failure` and passing
the result to ``InboxConsumer(..., classify=...)``::

    def classify(error: BaseException) -> FailureKind:
        if isinstance(error, CircuitOpenError):
            return FailureKind.OUTAGE
        return classify_failure(error)
"""

from __future__ import annotations

from enum import Enum

from sqlalchemy.exc import SQLAlchemyError

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.infrastructure.messaging.transport import TransportUnavailableError
from app.building_blocks.infrastructure.persistence.errors import as_unavailable

_MAX_CAUSES = 10
_DRIVERS = {"asyncpg", "aiosqlite", "sqlite3", "psycopg", "psycopg2"}


class FailureKind(Enum):
    POISON = "poison"
    """The message cannot be handled: retry it a few times, then dead-letter it."""
    OUTAGE = "outage"
    """A dependency is unavailable: keep the message and retry it until the outage ends."""
    REFUSED = "refused"
    """The message was judged and turned down for good: dead-letter it now, without retries."""


class MessageRefusedError(Exception):
    """Raised by a handler when retrying cannot help: a webhook endpoint answered 400, an event
    outlived its delivery window. ``dlq_headers`` are added to the dead letter's headers."""

    def __init__(self, message: str, *, dlq_headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.dlq_headers = dict(dlq_headers or {})


def classify_failure(error: BaseException) -> FailureKind:
    """``REFUSED`` for :class:`MessageRefusedError`, ``OUTAGE`` for an unavailable database or
    transport, ``POISON`` for anything else.

    Outages: ``TemporarilyUnavailableError`` (what the engine's error listener makes of lock and
    statement timeouts, lost connections, busy SQLite...), any driver error that
    ``as_unavailable`` maps to it (the mapping lives there, in one place), a full connection
    pool, ``TransportUnavailableError``, and ``OSError`` (which covers ``ConnectionError`` and
    ``TimeoutError``). An error raised *from* an outage (``raise ... from error``) is one too.
    Poison: everything else, such as undecodable or invalid payloads, domain errors, handler bugs,
    values the database refuses (SQLSTATE class 22) and constraint violations.
    """
    if isinstance(error, MessageRefusedError):
        return FailureKind.REFUSED
    cause: BaseException | None = error
    for _ in range(_MAX_CAUSES):
        if cause is None:
            break
        if _is_outage(cause):
            return FailureKind.OUTAGE
        cause = cause.__cause__
    return FailureKind.POISON


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, TemporarilyUnavailableError | TransportUnavailableError | OSError):
        return True
    # as_unavailable also matches error texts (SQLite's "database is locked"): only a database
    # error may be judged by its text, never, say, a validation error quoting a payload.
    return _from_database(error) and as_unavailable(error) is not None


def _from_database(error: BaseException) -> bool:
    """Raised by SQLAlchemy, or by a driver directly (asyncpg lets connect errors through)."""
    return isinstance(error, SQLAlchemyError) or type(error).__module__.partition(".")[0] in _DRIVERS
