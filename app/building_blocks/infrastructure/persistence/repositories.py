"""A repository base over SQLAlchemy Core tables with optimistic concurrency.

Aggregates are pydantic models, not ORM-mapped classes, so each repository states its mapping in
two small methods (``_to_row`` / ``_from_row``). Statements run immediately inside the unit of
work's transaction, so a constraint violation surfaces at the call that caused it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from uuid import UUID

from sqlalchemy import (
    Executable,
    Result,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.domain.exceptions import ConcurrencyError
from app.building_blocks.infrastructure.persistence.compiled_statements import CompiledSelect, CompiledWrite
from app.building_blocks.infrastructure.persistence.database import DbSession
from app.building_blocks.infrastructure.persistence.errors import translate_integrity_error

if TYPE_CHECKING:
    from app.building_blocks.infrastructure.persistence.unit_of_work import AggregateTracker

TAggregate = TypeVar("TAggregate", bound=AggregateRoot)


@dataclass(frozen=True)
class _Statements:
    """A table's statements, built and compiled once (see :mod:`compiled_statements`)."""

    get: CompiledSelect
    get_for_update: CompiledSelect
    insert: CompiledWrite
    update: CompiledWrite
    delete: CompiledWrite


@cache
def _statements(table: Table) -> _Statements:
    by_id = table.c.id == bindparam("_id")
    same_version = table.c.version == bindparam("_version")
    return _Statements(
        get=CompiledSelect(select(table).where(by_id)),
        get_for_update=CompiledSelect(select(table).where(by_id).with_for_update()),
        insert=CompiledWrite(insert(table)),
        update=CompiledWrite(update(table).where(by_id, same_version)),
        delete=CompiledWrite(delete(table).where(by_id, same_version)),
    )


class BaseRepository(ABC, Generic[TAggregate]):
    """What every repository offers; mirrors the domain's ``Repository`` protocol."""

    @abstractmethod
    async def get(self, id: UUID, *, for_update: bool = False) -> TAggregate | None: ...

    @abstractmethod
    async def add(self, aggregate: TAggregate) -> None: ...

    @abstractmethod
    async def update(self, aggregate: TAggregate) -> None: ...

    @abstractmethod
    async def remove(self, aggregate: TAggregate) -> None: ...


class SqlAlchemyRepository(BaseRepository[TAggregate]):
    """Persists one aggregate type in one table keyed by ``id`` with a ``version`` column.

    The stored version starts at 1. ``update`` and ``remove`` only touch the row if its version is
    still the one that was loaded; otherwise :class:`ConcurrencyError` is raised. Every write
    hands the aggregate's recorded events to the unit of work's tracker.
    """

    table: ClassVar[Table]

    def __init__(self, session: DbSession, tracker: AggregateTracker | None = None) -> None:
        self.session = session
        self._tracker = tracker

    @abstractmethod
    def _to_row(self, aggregate: TAggregate) -> dict[str, Any]:
        """Column values for the aggregate, excluding ``version``."""

    @abstractmethod
    def _from_row(self, row: Mapping[str, Any]) -> TAggregate: ...

    async def get(self, id: UUID, *, for_update: bool = False) -> TAggregate | None:
        """Load by id; ``for_update`` locks the row until commit (PostgreSQL) to serialise writers."""
        statements = _statements(self.table)
        statement = statements.get_for_update if for_update else statements.get
        return await self._load_one(statement, {"_id": id})

    async def _load_one(
        self, statement: Executable | CompiledSelect, parameters: Mapping[str, Any] | None = None
    ) -> TAggregate | None:
        if isinstance(statement, CompiledSelect):
            row: Mapping[str, Any] | None = await statement.first(self.session, **(parameters or {}))
        else:
            found = (await self._execute(statement, parameters)).mappings().first()
            row = None if found is None else dict(found)
        if row is None:
            return None
        aggregate = self._from_row(row)
        if self._tracker is not None:
            self._tracker.loaded(aggregate)
        return aggregate

    async def add(self, aggregate: TAggregate) -> None:
        await self._write(_statements(self.table).insert, {**self._to_row(aggregate), "version": 1})
        aggregate.version = 1
        self._saved(aggregate)

    async def update(self, aggregate: TAggregate) -> None:
        values = {name: value for name, value in self._to_row(aggregate).items() if name != "id"}
        parameters = {
            **values,
            "version": aggregate.version + 1,
            "_id": aggregate.id,
            "_version": aggregate.version,
        }
        await self._expect_one_row(_statements(self.table).update, parameters, aggregate)
        aggregate.version += 1
        self._saved(aggregate)

    async def remove(self, aggregate: TAggregate) -> None:
        parameters = {"_id": aggregate.id, "_version": aggregate.version}
        await self._expect_one_row(_statements(self.table).delete, parameters, aggregate)
        self._saved(aggregate)

    def _saved(self, aggregate: TAggregate) -> None:
        if self._tracker is not None:
            self._tracker.saved(aggregate)

    async def _expect_one_row(
        self, statement: CompiledWrite, parameters: Mapping[str, Any], aggregate: TAggregate
    ) -> None:
        if await self._write(statement, parameters) != 1:
            raise ConcurrencyError(
                f"{type(aggregate).__name__} {aggregate.id} was changed by another request",
                id=str(aggregate.id),
            )

    async def _write(self, statement: CompiledWrite, parameters: Mapping[str, Any]) -> int:
        """Run one of the table's writes; the number of rows it matched."""
        with _unique_violations():
            return await statement.execute(self.session, **parameters)

    async def _execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[Any]:
        """Run any statement (a subclass's own) through SQLAlchemy, unique violations translated."""
        with _unique_violations():
            return await self.session.execute(statement, parameters)


@contextmanager
def _unique_violations() -> Iterator[None]:
    """A unique violation leaves as :class:`UniqueConstraintViolation`; other errors as they are."""
    try:
        yield
    except IntegrityError as error:
        violation = translate_integrity_error(error)
        if violation is None:
            raise
        raise violation from error
