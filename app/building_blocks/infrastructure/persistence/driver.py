"""When and how the kit talks to asyncpg itself, under SQLAlchemy's pool and types.

SQLAlchemy's execution path (execution context, cursor adapter, result metadata, row objects)
costs about 0.15 ms per statement over asyncpg alone: on a read by primary key, more than the
query's own round trip; on a registration (two inserts), a sixth of the request. So the kit's
hot statements (:mod:`compiled_statements`) go to asyncpg directly where nothing is lost: on a
pooled connection SQLAlchemy holds in autocommit, where its adapter never begins or ends a
transaction behind the kit's back. The unit of work on PostgreSQL runs its transaction there
too, on the driver (:class:`DriverTransaction`), so reads and writes alike take the short path
inside it. Everything else, SQLite, an ORM session and a caller's own transaction, stays on
SQLAlchemy's path.

Errors keep their meaning on this path: see :func:`on_driver`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncpg.exceptions import InternalClientError  # type: ignore[import-untyped]
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.building_blocks.infrastructure.persistence.database import DbSession
from app.building_blocks.infrastructure.persistence.errors import (
    as_service_error,
    sqlstate,
    unreachable_database,
)


@dataclass(frozen=True, slots=True)
class Driver:
    """asyncpg's connection under an ``AsyncConnection``, with the connection's dialect."""

    session: AsyncConnection
    connection: Any  # asyncpg's Connection (untyped)
    dialect: Dialect


def autocommit_driver(session: DbSession) -> Driver | None:
    """The driver under ``session`` when the kit may use it: an asyncpg connection SQLAlchemy
    holds in autocommit (so its adapter never begins a transaction of its own), live, with no
    ``echo`` to honour. ``None`` otherwise: use SQLAlchemy's path."""
    if not isinstance(session, AsyncConnection) or session.dialect.driver != "asyncpg":
        return None
    connection = session.sync_connection
    if connection is None or connection.invalidated or connection.closed or connection.engine.echo:
        return None
    pooled = connection.connection
    if not getattr(pooled.dbapi_connection, "autocommit", False):
        return None
    return Driver(session, pooled.driver_connection, session.dialect)


async def on_driver(driver: Driver, call: Callable[..., Awaitable[Any]], *arguments: Any) -> Any:
    """Await ``call(*arguments)``; raise its failure as SQLAlchemy's path would.

    - an integrity error (SQLSTATE class 23) as SQLAlchemy's ``IntegrityError``, which the
      repositories translate (a unique violation is a 409);
    - the rest as :func:`as_service_error` says, as SQLAlchemy's path does: a value refused as
      data is a 400, an outage (lock timeout, terminated backend...) a 503.

    A connection found dead never goes back to the pool: asyncpg has closed it, or its protocol
    refuses to go on (``InternalClientError``: the server ended the session mid-exchange and the
    socket's end has not been read yet); the request gets the 503 of a lost connection.
    """
    try:
        return await call(*arguments)
    except Exception as error:
        dead = driver.connection.is_closed() or isinstance(error, InternalClientError)
        if dead:
            with contextlib.suppress(Exception):
                await driver.session.invalidate()
        if (sqlstate(error) or "").startswith("23"):
            raise IntegrityError(str(arguments[0]) if arguments else "", None, error) from error
        translated = as_service_error(error) or (unreachable_database() if dead else None)
        if translated is None:
            raise
        raise translated from error


class DriverTransaction:
    """A transaction begun on the driver under an autocommit ``AsyncConnection``.

    The unit of work's transaction on PostgreSQL: statements through SQLAlchemy and through the
    driver both run in it (SQLAlchemy, in autocommit, sends them as they come). Commit and
    rollback fail as :func:`on_driver` says; a rollback that fails (the connection was lost)
    invalidates the connection, so it never returns to the pool inside a transaction.
    """

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._transaction = driver.connection.transaction()
        self.active = False

    async def start(self) -> None:
        await on_driver(self._driver, self._transaction.start)
        self.active = True

    async def commit(self) -> None:
        self.active = False
        await on_driver(self._driver, self._transaction.commit)

    async def rollback(self) -> None:
        if not self.active:
            return
        self.active = False
        try:
            await on_driver(self._driver, self._transaction.rollback)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._driver.session.invalidate()
            raise
