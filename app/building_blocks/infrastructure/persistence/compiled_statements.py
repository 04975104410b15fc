"""Statements compiled once and, where the kit may (see :mod:`driver`), run on asyncpg directly.

:class:`CompiledSelect` and :class:`CompiledWrite` keep what SQLAlchemy is for (the statement
written in its expression language against the tables, compiled by its dialect, its types' bind
and result processing) and skip its execution path where nothing is lost: on a connection it
holds in autocommit on asyncpg (the unit of work's, on PostgreSQL) they send the compiled SQL
straight to asyncpg, which prepares and caches it. Everywhere else (SQLite, a caller's own
transaction, an ORM session, ``DATABASE_ECHO``) they are ``session.execute``, with the same
outcome. SQLAlchemy's execution events do not see the statements sent to the driver: trace them
at the driver (asyncpg's instrumentation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Delete, Insert, Select, Update
from sqlalchemy.engine import Dialect

from app.building_blocks.infrastructure.persistence.database import DbSession
from app.building_blocks.infrastructure.persistence.driver import autocommit_driver, on_driver

Processor = Any  # a type's bind or result processor: a callable, or None when it has none


@dataclass(frozen=True, slots=True)
class _Plan:
    """The statement as the dialect compiled it, its parameters in positional order."""

    sql: str
    parameters: tuple[str, ...]
    bind: tuple[Processor, ...]
    keys: tuple[str, ...] = ()
    results: tuple[Processor, ...] = ()

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


def _refuse_in_lists(statement: Select[Any] | Insert | Update | Delete) -> None:
    if any(bind.expanding for bind in statement.compile().binds.values()):
        raise ValueError("compiled statements do not support expanding (IN list) parameters")


def _compile(
    statement: Select[Any] | Insert | Update | Delete, dialect: Dialect, columns: Sequence[str] | None = None
) -> _Plan:
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns is not None else None)
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    bind = tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    if not isinstance(statement, Select):
        return _Plan(compiled.string, names, bind)
    selected = list(statement.selected_columns)
    return _Plan(
        compiled.string,
        names,
        bind,
        keys=tuple(cast(str, column.key) for column in selected),
        results=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in selected
        ),
    )


class CompiledSelect:
    """A SELECT with named bound parameters, built once (module level) and run many times.

    ``await query.first(session, user_id=...)`` is the first row as a ``dict`` keyed by column
    key (or ``None``), ``await query.all(session, ...)`` every row: the keys and values
    ``session.execute(statement, params).mappings()`` gives. ``IN`` lists are not supported:
    their SQL changes with the list's length.
    """

    def __init__(self, statement: Select[Any]) -> None:
        _refuse_in_lists(statement)
        if any(column.key is None for column in statement.selected_columns):
            raise ValueError("CompiledSelect needs a key for every selected expression: .label() it")
        self.statement = statement
        self._plans: dict[str, _Plan] = {}

    async def first(self, session: DbSession, /, **params: Any) -> dict[str, Any] | None:
        driver = autocommit_driver(session)
        if driver is None:
            row = (await session.execute(self.statement, params)).mappings().first()
            return None if row is None else dict(row)
        plan = self._plan(driver.dialect)
        record = await on_driver(driver, driver.connection.fetchrow, plan.sql, *plan.arguments(params))
        return None if record is None else plan.row(record)

    async def all(self, session: DbSession, /, **params: Any) -> list[dict[str, Any]]:
        driver = autocommit_driver(session)
        if driver is None:
            return [dict(row) for row in (await session.execute(self.statement, params)).mappings()]
        plan = self._plan(driver.dialect)
        records = await on_driver(driver, driver.connection.fetch, plan.sql, *plan.arguments(params))
        return [plan.row(record) for record in records]

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = _compile(self.statement, dialect)
        return plan


class CompiledWrite:
    """An INSERT, UPDATE or DELETE built once and run many times.

    Parameters are named: column keys for the values (an INSERT or UPDATE sets exactly the
    columns given, as ``session.execute`` would) plus the statement's own bound parameters
    (``bindparam("_id")`` in a WHERE). :meth:`execute` returns the number of rows matched;
    :meth:`execute_many` runs it once per row of one shape (an ``executemany``).
    """

    def __init__(self, statement: Insert | Update | Delete) -> None:
        _refuse_in_lists(statement)
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}

    async def execute(self, session: DbSession, /, **params: Any) -> int:
        driver = autocommit_driver(session)
        if driver is None:
            result = await session.execute(self.statement, params)
            return int(getattr(result, "rowcount", -1))
        plan = self._plan(driver.dialect, params)
        status = await on_driver(driver, driver.connection.execute, plan.sql, *plan.arguments(params))
        return _rowcount(status)

    async def execute_many(self, session: DbSession, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        driver = autocommit_driver(session)
        if driver is None:
            await session.execute(self.statement, list(rows))
            return
        plan = self._plan(driver.dialect, rows[0])
        arguments = [plan.arguments(row) for row in rows]
        if len(arguments) == 1:
            await on_driver(driver, driver.connection.execute, plan.sql, *arguments[0])
        else:
            await on_driver(driver, driver.connection.executemany, plan.sql, arguments)

    def _plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan:
        key = (dialect.name, frozenset(params))
        plan = self._plans.get(key)
        if plan is None:
            columns = [name for name in params if name in self.statement.table.c]
            plan = self._plans[key] = _compile(self.statement, dialect, columns)
        return plan


def _rowcount(status: str) -> int:
    """asyncpg's command status (``"UPDATE 1"``, ``"INSERT 0 1"``) → the number of rows."""
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else -1
