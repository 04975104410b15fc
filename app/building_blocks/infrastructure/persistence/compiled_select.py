"""A SELECT compiled once and, for autocommit reads on asyncpg, run on the driver's connection.

SQLAlchemy's execution path (execution context, cursor adapter, result metadata, row objects)
costs about 0.15 ms per statement over asyncpg alone: on a read by primary key, more than
the query's own round trip, and a fifth of the whole request. :class:`CompiledSelect` keeps what
SQLAlchemy is for (the statement written in its expression language against the tables, compiled
by its dialect, its types' bind and result processing) and skips the rest where nothing is lost:
on a pooled connection in autocommit (the read-only unit of work on PostgreSQL) it sends the
compiled SQL straight to asyncpg, which prepares and caches it. Everywhere else (SQLite, a
connection inside a transaction, an ORM session, ``DATABASE_ECHO``) it is ``session.execute``,
with the same rows back.

Errors keep their meaning: a lost connection is invalidated (never returned to the pool) and,
like any outage, raised as ``TemporarilyUnavailableError`` (see :func:`_on_driver`); a value
the database refuses as data is an ``UnstorableValueError``, as on SQLAlchemy's path.
SQLAlchemy's execution events do not see these statements: trace them at the driver (asyncpg's
instrumentation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from asyncpg.exceptions import InternalClientError  # type: ignore[import-untyped]
from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.building_blocks.infrastructure.persistence.database import DbSession
from app.building_blocks.infrastructure.persistence.errors import (
    UnstorableValueError,
    as_unavailable,
    is_data_error,
    unreachable_database,
)

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """The statement as the dialect compiled it, with its parameters in positional order."""

    sql: str
    parameters: tuple[str, ...]
    bind: tuple[Processor, ...]
    keys: tuple[str, ...]
    results: tuple[Processor, ...]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        try:
            values = [params[name] for name in self.parameters]
        except KeyError as missing:
            raise TypeError(f"missing bound parameter {missing}") from None
        return [v if p is None or v is None else p(v) for v, p in zip(values, self.bind, strict=True)]

    def row(self, record: Sequence[Any]) -> dict[str, Any]:
        return {
            key: value if process is None else process(value)
            for key, value, process in zip(self.keys, record, self.results, strict=True)
        }


class CompiledSelect:
    """A SELECT with named bound parameters, built once (module level) and run many times.

    ``await query.first(session, user_id=...)`` is the first row as a ``dict`` keyed by column
    key (or ``None``), ``await query.all(session, ...)`` every row: the same keys and values
    ``session.execute(statement, params).mappings()`` gives. Expanding parameters (``IN`` lists)
    are not supported: their SQL changes with the list's length.
    """

    def __init__(self, statement: Select[Any]) -> None:
        if any(bind.expanding for bind in statement.compile().binds.values()):
            raise ValueError("CompiledSelect does not support expanding (IN list) parameters")
        if any(column.key is None for column in statement.selected_columns):
            raise ValueError("CompiledSelect needs a key for every selected expression: .label() it")
        self.statement = statement
        self._plans: dict[str, _Plan] = {}

    async def first(self, session: DbSession, /, **params: Any) -> dict[str, Any] | None:
        driver = _autocommit_driver(session)
        if driver is None:
            row = (await session.execute(self.statement, params)).mappings().first()
            return None if row is None else dict(row)
        plan = self._plan(driver.dialect)
        record = await _on_driver(driver, driver.connection.fetchrow, plan.sql, plan.arguments(params))
        return None if record is None else plan.row(record)

    async def all(self, session: DbSession, /, **params: Any) -> list[dict[str, Any]]:
        driver = _autocommit_driver(session)
        if driver is None:
            return [dict(row) for row in (await session.execute(self.statement, params)).mappings()]
        plan = self._plan(driver.dialect)
        records = await _on_driver(driver, driver.connection.fetch, plan.sql, plan.arguments(params))
        return [plan.row(record) for record in records]

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = _compile(self.statement, dialect)
        return plan


def _compile(statement: Select[Any], dialect: Dialect) -> _Plan:
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    names = tuple(compiled.positiontup or ())
    columns = list(statement.selected_columns)
    return _Plan(
        sql=compiled.string,
        parameters=names,
        bind=tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names),
        keys=tuple(cast(str, column.key) for column in columns),
        results=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ),
    )


@dataclass(frozen=True, slots=True)
class _Driver:
    session: AsyncConnection
    connection: Any  # asyncpg's Connection
    dialect: Dialect


def _autocommit_driver(session: DbSession) -> _Driver | None:
    """asyncpg's connection under ``session`` when a statement there is its own transaction."""
    if not isinstance(session, AsyncConnection) or session.dialect.driver != "asyncpg":
        return None
    connection = session.sync_connection
    if connection is None or connection.invalidated or connection.closed or connection.engine.echo:
        return None
    pooled = connection.connection
    if not getattr(pooled.dbapi_connection, "autocommit", False):
        return None  # in a transaction, which SQLAlchemy's adapter begins lazily: let it run it
    return _Driver(session, pooled.driver_connection, session.dialect)


async def _on_driver(
    driver: _Driver, call: Callable[..., Awaitable[Any]], sql: str, arguments: list[Any]
) -> Any:
    """Run ``call``; raise its failure as SQLAlchemy's path would, a dead connection invalidated.

    A connection is dead when asyncpg has closed it, or when its protocol refuses to go on
    (``InternalClientError``: the server ended the session mid-exchange and the socket's end has
    not been read yet). Either way it never goes back to the pool and the request gets the 503
    of a lost connection: a retry gets a live one.
    """
    try:
        return await call(sql, *arguments)
    except Exception as error:
        dead = driver.connection.is_closed() or isinstance(error, InternalClientError)
        if dead:
            with contextlib.suppress(Exception):
                await driver.session.invalidate()
        if is_data_error(error):
            raise UnstorableValueError() from error
        unavailable = as_unavailable(error) or (unreachable_database() if dead else None)
        if unavailable is None:
            raise
        raise unavailable from error
