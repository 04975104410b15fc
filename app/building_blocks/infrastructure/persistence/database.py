"""Async engines and sessions from a URL: ``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only

from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.infrastructure.persistence.errors import as_service_error

DbSession = AsyncConnection | AsyncSession
"""What repositories, read models and commit hooks execute statements on. A unit of work gives
them an ``AsyncConnection`` (an ORM ``Session`` would add a third of a fast read's cost and
nothing the kit uses); a session of the caller's (the inbox's, a seed-style publisher's) works
the same: both have ``execute``."""

READ_ONLY = "read_only"
"""Execution option for connections that will only read: SQLite then begins a deferred
transaction that runs alongside the writer instead of queueing for the write lock."""


def read_only_options(dialect_name: str) -> dict[str, Any]:
    """Execution options for a connection that will only read.

    On PostgreSQL it runs in autocommit: each statement is its own transaction, so a read costs
    no ``BEGIN`` and no ``ROLLBACK`` round trip (two of a one-statement read's three). Several
    statements then see several snapshots, which the kit's reads accept (a page of a list is one
    statement). SQLite begins a deferred transaction instead (see ``READ_ONLY``).
    """
    if dialect_name == "postgresql":
        return {READ_ONLY: True, "isolation_level": "AUTOCOMMIT"}
    return {READ_ONLY: True}


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached; the message is one line meant for an operator."""


def create_engine(
    url: str | URL,
    *,
    echo: bool = False,
    pool_size: int = 20,
    max_overflow: int = 0,
    pool_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    lock_timeout: float = 5.0,
    statement_timeout: float | None = 30.0,
    application_name: str | None = None,
    ping_after_idle: float = 30.0,
) -> AsyncEngine:
    """Build an engine with the settings each backend needs to be safe under concurrency.

    ``lock_timeout`` bounds how long a statement waits for a row lock (PostgreSQL) or the write
    lock (SQLite ``busy_timeout``); past it the request fails as temporarily unavailable (503)
    rather than holding a connection forever. SQLite ignores the pool settings.

    The pool keeps ``pool_size`` connections; SQLAlchemy closes an overflow connection when it is
    returned, so a service whose sustained concurrency exceeds ``pool_size`` opens (TLS,
    authentication) a connection per request. Size the pool; keep the overflow for rare bursts.

    Dead pooled connections are replaced before a request sees them (see
    :func:`_replace_dead_connections`), without a round trip on every checkout.
    """
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, echo=echo, connect_timeout=connect_timeout, busy_timeout=lock_timeout)
    else:
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() == "asyncpg":
            server_settings = {"lock_timeout": str(int(lock_timeout * 1000))}
            if statement_timeout:
                server_settings["statement_timeout"] = str(int(statement_timeout * 1000))
            if application_name:
                server_settings["application_name"] = application_name
            connect_args = {"timeout": connect_timeout, "server_settings": server_settings}
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            connect_args=connect_args,
        )
        _replace_dead_connections(engine, ping_after_idle, ping_timeout=connect_timeout)
    event.listen(engine.sync_engine, "handle_error", _translate_driver_errors)
    return engine


_IDLE_SINCE = "idle_since"


def _replace_dead_connections(engine: AsyncEngine, ping_after_idle: float, *, ping_timeout: float) -> None:
    """Check a pooled connection when it is checked out, at no cost unless it may be dead.

    A server that ends a session (a restart, a failover, ``pg_terminate_backend``) closes its
    socket, and the driver notices while the connection sits in the pool: such a connection is
    replaced without a round trip. One idle longer than ``ping_after_idle`` seconds (a firewall
    may have dropped it silently) is pinged first, for at most ``ping_timeout`` seconds: a dropped
    connection never answers. ``pool_pre_ping`` would instead spend a round
    trip (BEGIN, ping, ROLLBACK on asyncpg) on every checkout, a third of a fast request's cost.
    Raising :class:`DisconnectionError` makes the pool connect afresh, unseen by the request.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        driver_connection = getattr(dbapi_connection, "_connection", None)
        is_closed = getattr(driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the server closed this pooled connection")
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since > ping_after_idle:
            try:
                if driver_connection is not None and hasattr(driver_connection, "execute"):
                    await_only(driver_connection.execute(";", timeout=ping_timeout))  # asyncpg
                else:
                    dbapi_connection.ping()
            except Exception as error:
                raise DisconnectionError(f"an idle pooled connection failed its ping: {error!r}") from error


def _translate_driver_errors(context: ExceptionContext) -> BaseException | None:
    """Data exceptions become 400s, lock and busy timeouts 503s; the rest stay as they are.

    A pre-ping (``pool_pre_ping``, when a caller turns it on) is left alone: a failed ping makes
    SQLAlchemy connect afresh, unseen by the request; translating it would hand the request a 503.
    """
    if context.is_pre_ping:
        return None
    return as_service_error(context.sqlalchemy_exception or context.original_exception)


class _WriterQueue:
    """The in-process queue of SQLite writers: first come, first served."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.lock = asyncio.Lock()


_WRITER_QUEUES: weakref.WeakKeyDictionary[Any, _WriterQueue] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def writer_turn(engine: AsyncEngine) -> AsyncIterator[None]:
    """On SQLite, wait for this process's earlier writers (FIFO) before taking the write lock.

    SQLite has one writer, and its busy handler polls with growing sleeps and no order: under a
    burst of concurrent writes an unlucky one can wait out the lock timeout (a 503) while others
    get in. Queued here, each write transaction starts as the previous one ends; the wait is
    bounded by the same lock timeout. Other processes still meet the busy handler. No-op on
    other databases.
    """
    queue = _WRITER_QUEUES.get(engine.sync_engine)
    if queue is None:
        yield
        return
    try:
        async with asyncio.timeout(queue.timeout):
            await queue.lock.acquire()
    except TimeoutError as error:
        raise TemporarilyUnavailableError("the database is busy; retry shortly") from error
    try:
        yield
    finally:
        queue.lock.release()


def _sqlite_engine(url: URL, *, echo: bool, connect_timeout: float, busy_timeout: float) -> AsyncEngine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": connect_timeout})
    _WRITER_QUEUES[engine.sync_engine] = _WriterQueue(busy_timeout)

    # SQLite allows one writer at a time. A deferred transaction that reads and then writes fails
    # with "database is locked" when another writer got in first, so a transaction that may write
    # takes the write lock up front (BEGIN IMMEDIATE) and waits for it (busy_timeout). Readers
    # (READ_ONLY connections) begin deferred and, thanks to WAL, never wait for a writer.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL's recommended durability: a commit survives the process being killed (what the
        # embedded mode must survive; tests kill -9 it), only an OS crash may lose the last ones.
        # FULL would fsync on every commit, holding the single writer's lock for a disk flush.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def describe_url(url: str | URL) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


async def check_database(engine: AsyncEngine, *, timeout: float = 5.0) -> None:
    """Run ``SELECT 1``; raise :class:`DatabaseUnavailableError` with a one-line reason."""
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as connection:
                connection = await connection.execution_options(**{READ_ONLY: True})
                await connection.execute(text("SELECT 1"))
    except TimeoutError:
        raise DatabaseUnavailableError(
            f"database {describe_url(engine.url)} did not answer within {timeout:g}s"
        ) from None
    except Exception as error:  # driver errors differ per backend; the message is what matters
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise DatabaseUnavailableError(
            f"cannot connect to database {describe_url(engine.url)}: {reason or type(error).__name__}"
        ) from None
