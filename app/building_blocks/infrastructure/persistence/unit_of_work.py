"""The SQLAlchemy unit of work: one connection, one transaction, events collected on commit.

A unit of work normally owns its session and transaction. Inside :func:`enlist` it joins the
caller's instead, as a SAVEPOINT: the inbox consumer enlists its transaction so that a command a
consumer sends commits (outbox rows included) atomically with the inbox record, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Protocol, Self

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    AsyncTransaction,
    async_sessionmaker,
)

from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.domain.events import DomainEvent
from app.building_blocks.infrastructure.persistence.database import (
    DbSession,
    read_only_options,
    writer_turn,
)
from app.building_blocks.infrastructure.persistence.driver import DriverTransaction, autocommit_driver
from app.building_blocks.infrastructure.persistence.errors import (
    as_unavailable,
    translate_integrity_error,
)

logger = logging.getLogger("app.database")

_enlisted: ContextVar[DbSession | None] = ContextVar("enlisted_session", default=None)


@contextmanager
def enlist(session: DbSession) -> Iterator[DbSession]:
    """Units of work opened inside this block join ``session``'s transaction.

    Each joins as a SAVEPOINT: its commit releases the savepoint (the outer commit makes it
    durable), its failure rolls back only its own writes, and its commit hooks' after-commit
    side runs once the outer transaction has committed.
    """
    token = _enlisted.set(session)
    try:
        yield session
    finally:
        _enlisted.reset(token)


_OPTION_ENGINES = "_unit_of_work_option_engines"  # on the sync engine: they live and die with it


def _with_options(engine: AsyncEngine, options: dict[str, Any]) -> AsyncEngine:
    """``engine`` whose connections come with ``options`` (sharing its pool), built once."""
    if not options:
        return engine
    variants: dict[tuple[tuple[str, Any], ...], AsyncEngine] = engine.sync_engine.__dict__.setdefault(
        _OPTION_ENGINES, {}
    )
    key = tuple(sorted(options.items()))
    variant = variants.get(key)
    if variant is None:
        variant = variants[key] = engine.execution_options(**options)
    return variant


class UnsavedChangesError(RuntimeError):
    """An aggregate recorded events but was never saved: a handler forgot ``repository.update``."""


class CommitHook(Protocol):
    """Something that must happen atomically with a commit (the transactional outbox)."""

    async def before_commit(self, session: DbSession, events: list[DomainEvent]) -> None:
        """Runs inside the transaction, after the handler, with the events being committed."""

    def after_commit(self) -> None:
        """Runs once the transaction has committed."""


class AfterCommitHook(Protocol):
    """A commit hook may also have this: awaited once the transaction has committed, with the
    aggregates it saved, before the unit of work's caller goes on (the cache's invalidation).
    It must not raise: the commit has happened."""

    async def committed(self, aggregates: Sequence[AggregateRoot]) -> None: ...


_detached: set[asyncio.Task[None]] = set()  # after-commit work of enlisted units, until it ends


def _after_commit_hooks(hooks: Sequence[CommitHook]) -> tuple[AfterCommitHook, ...]:
    return tuple(hook for hook in hooks if hasattr(hook, "committed"))  # type: ignore[misc]


async def _run_after_commit(hooks: Sequence[AfterCommitHook], aggregates: Sequence[AggregateRoot]) -> None:
    for hook in hooks:
        try:
            await hook.committed(aggregates)
        except Exception:
            logger.exception("after-commit hook %s failed; the commit stands", type(hook).__name__)


def _engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the session factory is bound to no AsyncEngine: pass the engine itself")
    return engine


class AggregateTracker:
    """What the repositories of one unit of work loaded and saved.

    Events are taken from an aggregate when its state is written, so an event is committed if and
    only if the change that raised it is. An aggregate that still holds events at commit time was
    changed but not saved, which is a bug worth failing loudly for.
    """

    def __init__(self) -> None:
        self._seen: dict[int, AggregateRoot] = {}
        self._saved: dict[int, AggregateRoot] = {}
        self._events: list[DomainEvent] = []

    def loaded(self, aggregate: AggregateRoot) -> None:
        self._seen[id(aggregate)] = aggregate

    def saved(self, aggregate: AggregateRoot) -> None:
        self._seen[id(aggregate)] = aggregate
        self._saved[id(aggregate)] = aggregate
        self._events.extend(aggregate.pull_events())

    @property
    def saved_aggregates(self) -> list[AggregateRoot]:
        """Every aggregate written, in the order first saved."""
        return list(self._saved.values())

    def drain(self) -> list[DomainEvent]:
        unsaved = [a for a in self._seen.values() if a.pending_events]
        if unsaved:
            names = ", ".join(f"{type(a).__name__} {a.id}" for a in unsaved)
            raise UnsavedChangesError(f"changed but not saved: {names}")
        events, self._events = self._events, []
        return events


class SqlAlchemyUnitOfWork:
    """Takes a pooled connection on enter (``session``), rolls back on exit unless committed.

    Core statements on an ``AsyncConnection``, not an ORM ``Session``: the kit maps aggregates
    itself, and the Session's bookkeeping measured a fifth of a read's CPU. Reads on PostgreSQL
    run in autocommit (see ``read_only_options``); writes in a transaction begun on the driver,
    so the kit's compiled statements take asyncpg's short path in it (see :mod:`driver`).
    Subclasses attach their repositories in :meth:`_open` (e.g. ``self.users = ...``), passing
    them ``self.tracker``. On commit the events of every saved aggregate, in the order they were
    saved, are handed to each :class:`CommitHook` inside the transaction: that is where the
    transactional outbox stores them, so they are committed atomically with the state.
    """

    def __init__(
        self,
        database: AsyncEngine | async_sessionmaker[AsyncSession],
        hooks: Sequence[CommitHook] = (),
    ) -> None:
        self._engine = database if isinstance(database, AsyncEngine) else _engine_of(database)
        self._hooks = tuple(hooks)
        self._after_hooks = _after_commit_hooks(self._hooks)
        self._session: DbSession | None = None
        self._turns = contextlib.AsyncExitStack()  # this unit's writer turn, if it took one
        self._savepoint: AsyncSessionTransaction | AsyncTransaction | None = None  # when enlisted
        self._transaction: DriverTransaction | None = None  # PostgreSQL: begun on the driver
        self.tracker = AggregateTracker()
        self.read_only = False

    def add_hook(self, hook: CommitHook) -> None:
        """Add a commit hook before the unit of work is committed."""
        self._hooks = (*self._hooks, hook)
        self._after_hooks = _after_commit_hooks(self._hooks)

    @property
    def hooks(self) -> tuple[CommitHook, ...]:
        return self._hooks

    @property
    def session(self) -> DbSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open; use 'async with uow:'")
        return self._session

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("a unit of work is opened once")
        outer = _enlisted.get()
        if outer is not None:
            self._savepoint = await outer.begin_nested()
            self._session = outer
            self._open(outer)
            return self
        if not self.read_only:  # SQLite: this process's writers take turns (no-op elsewhere)
            await self._turns.enter_async_context(writer_turn(self._engine))
        try:  # a connection now: the pool may time out, connecting may fail (a 503 either way)
            connection = await _with_options(self._engine, self._connection_options()).connect()
        except Exception as error:
            await self._turns.aclose()
            unavailable = as_unavailable(error)
            if unavailable is not None and unavailable is not error:
                raise unavailable from error
            raise
        except BaseException:
            await self._turns.aclose()
            raise
        self._session = connection
        try:
            if self._on_driver():
                await self._begin_on_driver(connection)
            self._open(connection)
        except BaseException as error:
            await self.__aexit__(type(error), error, error.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back what was not committed and release the connection; a database outage, here
        or in the work, leaves as ``TemporarilyUnavailableError``.

        Ending the session on a connection that was lost (the server terminated it mid-request)
        fails too, but the server has discarded that transaction already: such a failure neither
        replaces the error that ended the work nor fails work that had finished.
        """
        if self._savepoint is not None:
            if self._savepoint.is_active:  # not committed: undo this unit's writes, keep the outer's
                await self._savepoint.rollback()
            return
        try:
            failure = await self._release()
        finally:
            await self._turns.aclose()  # the next writer's turn, once this one's transaction ended
        if exc is not None:
            if failure is not None:
                logger.warning("after %s, ending the unit of work failed: %r", type(exc).__name__, failure)
            unavailable = as_unavailable(exc)
            if unavailable is not None and unavailable is not exc:
                raise unavailable from exc
            return  # the work's own error goes on
        if failure is not None:
            if as_unavailable(failure) is None:
                raise failure
            logger.warning("the connection was lost once the work was done: %r", failure)

    def _on_driver(self) -> bool:
        """PostgreSQL: a unit of work that may write runs its transaction on the driver, under a
        connection SQLAlchemy holds in autocommit, so the kit's compiled statements take asyncpg's
        short path inside it (see :mod:`driver`); statements through SQLAlchemy run in it all the
        same. Not with ``echo``: SQLAlchemy logs what it sends, so it sends everything."""
        return not self.read_only and self._engine.dialect.driver == "asyncpg" and not self._engine.echo

    def _connection_options(self) -> dict[str, Any]:
        """Applied as the connection is checked out (no extra step per unit of work)."""
        if self.read_only:
            return read_only_options(self._engine.dialect.name)
        return {"isolation_level": "AUTOCOMMIT"} if self._on_driver() else {}

    async def _begin_on_driver(self, connection: AsyncConnection) -> None:
        driver = autocommit_driver(connection)
        if driver is None:
            raise RuntimeError("an autocommit asyncpg connection without its driver connection")
        transaction = DriverTransaction(driver)
        await transaction.start()
        self._transaction = transaction

    async def _release(self) -> Exception | None:
        """Roll back and close the session; return a failure instead of raising it."""
        session = self.session
        failure: Exception | None = None
        try:
            if self._transaction is not None:
                await self._transaction.rollback()
            if session.in_transaction():
                await session.rollback()
        except Exception as error:
            failure = error
        finally:
            try:
                await session.close()
            except Exception as error:
                failure = failure or error
        return failure

    def _open(self, session: DbSession) -> None:
        """Hook: create repositories bound to ``session`` and ``self.tracker``."""

    async def commit(self) -> list[DomainEvent]:
        events = self.tracker.drain()
        try:
            for hook in self._hooks:
                await hook.before_commit(self.session, events)
            if self._savepoint is not None:
                await self._savepoint.commit()
            elif self._transaction is not None:
                await self._transaction.commit()
            else:
                await self.session.commit()
        except IntegrityError as error:
            violation = translate_integrity_error(error)
            if violation is None:
                raise
            raise violation from error
        if self._savepoint is not None:
            self._after_outer_commit()
        else:
            for hook in self._hooks:
                hook.after_commit()
            if self._after_hooks:
                await _run_after_commit(self._after_hooks, self.tracker.saved_aggregates)
        return events

    def _after_outer_commit(self) -> None:
        hooks, after_hooks = self._hooks, self._after_hooks
        aggregates = self.tracker.saved_aggregates

        def committed(_session: Any) -> None:
            for hook in hooks:
                hook.after_commit()
            if after_hooks:  # the outer commit is synchronous here: the awaited part runs detached
                task = asyncio.get_running_loop().create_task(_run_after_commit(after_hooks, aggregates))
                _detached.add(task)
                task.add_done_callback(_detached.discard)

        session = self.session
        if isinstance(session, AsyncSession):
            event.listen(session.sync_session, "after_commit", committed, once=True)
        else:
            event.listen(session.sync_connection, "commit", committed, once=True)

    async def rollback(self) -> None:
        if self._savepoint is not None:
            await self._savepoint.rollback()
        elif self._transaction is not None:
            await self._transaction.rollback()
        else:
            await self.session.rollback()
