"""Async engines and sessions from a URL: ``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.building_blocks.infrastructure.persistence.errors import UnstorableValueError, is_data_error


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached; the message is one line meant for an operator."""


def create_engine(
    url: str | URL,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 10,
    connect_timeout: float = 5.0,
    application_name: str | None = None,
) -> AsyncEngine:
    """Build an engine with the settings each backend needs to be safe under concurrency."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, echo=echo, connect_timeout=connect_timeout)
    else:
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() == "asyncpg":
            connect_args["timeout"] = connect_timeout
            if application_name:
                connect_args["server_settings"] = {"application_name": application_name}
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            connect_args=connect_args,
        )
    event.listen(engine.sync_engine, "handle_error", _data_errors_are_bad_input)
    return engine


def _data_errors_are_bad_input(context: ExceptionContext) -> BaseException | None:
    """Replace a driver's data exception with a domain validation error (answered as 400)."""
    if is_data_error(context.sqlalchemy_exception or context.original_exception):
        return UnstorableValueError()
    return None


def _sqlite_engine(url: URL, *, echo: bool, connect_timeout: float) -> AsyncEngine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": connect_timeout})

    # SQLite allows one writer at a time. A deferred transaction that reads and then writes fails
    # with "database is locked" when another writer got in first, so every transaction takes the
    # write lock up front (BEGIN IMMEDIATE) and waits for it (busy_timeout). This serialises
    # writers: the embedded mode trades throughput for correctness.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(connect_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

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
