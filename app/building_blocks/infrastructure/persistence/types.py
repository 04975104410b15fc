"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Dialect, Text, cast
from sqlalchemy.types import TypeDecorator, UserDefinedType


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out.

    PostgreSQL keeps the offset (``timestamptz``); SQLite stores text and hands back naive values,
    which this type re-labels as UTC so domain code never sees a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class JsonText(UserDefinedType[str]):
    """A JSON document kept as the text it was written as, in and out.

    The column is ``json`` (PostgreSQL validates it and stores the text byte for byte, unlike
    ``jsonb``, which re-renders it); values are bound as JSON text and read back as text, never
    parsed on the way. For data that is written once and sent on as it is, such as the outbox's
    event payloads, this spares a parse and a re-render at each end.
    """

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "JSON"

    def bind_processor(self, dialect: Dialect) -> None:
        return None  # already JSON text

    def column_expression(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        return cast(column, Text)  # the stored text, not the driver's decoded value
