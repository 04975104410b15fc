"""The query side for users: SQL straight to read models, keyset-paginated."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import RowMapping, bindparam, select

from app.building_blocks.infrastructure.persistence.database import DbSession
from app.users.application.read_models import ActivityEntry, UserDetails, UserPage
from app.users.domain.user import UserStatus
from app.users.persistence.tables import user_activity_table, users_table

_BY_ID = select(users_table).where(users_table.c.id == bindparam("user_id"))  # built once: cached


def _details(row: RowMapping) -> UserDetails:
    return UserDetails.model_validate(dict(row))


class SqlAlchemyUserReadModel:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    async def get(self, user_id: UUID) -> UserDetails | None:
        row = (await self.session.execute(_BY_ID, {"user_id": user_id})).mappings().first()
        return _details(row) if row else None

    async def list(
        self,
        *,
        limit: int,
        after: UUID | None,
        status: UserStatus | None,
        email_prefix: str | None,
    ) -> UserPage:
        """Keyset pagination on the UUIDv7 id: ``id > after`` is the next page whatever was deleted
        meanwhile, with no offset drift. Ids come from the clock when the user is created, so a
        row committed late with an earlier id (a slow transaction, a clock behind) can land on a
        page a client has already read: good for browsing, not a change feed."""
        statement = select(users_table).order_by(users_table.c.id).limit(limit + 1)
        if after is not None:
            statement = statement.where(users_table.c.id > after)
        if status is not None:
            statement = statement.where(users_table.c.status == status.value)
        if email_prefix:
            statement = statement.where(users_table.c.email.startswith(email_prefix, autoescape=True))
        rows = (await self.session.execute(statement)).mappings().all()
        items = [_details(row) for row in rows[:limit]]
        next_after = items[-1].id if len(rows) > limit else None
        return UserPage(items=items, next_after=next_after)

    async def activity(self, user_id: UUID, *, limit: int) -> Sequence[ActivityEntry]:
        table = user_activity_table
        rows = await self.session.execute(
            select(table.c.event_id, table.c.event_type, table.c.occurred_at, table.c.data)
            .where(table.c.user_id == user_id)
            .order_by(table.c.occurred_at, table.c.event_id)
            .limit(limit)
        )
        return [ActivityEntry.model_validate(dict(row)) for row in rows.mappings()]
