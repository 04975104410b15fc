"""The query side for users: SQL straight to read models, keyset-paginated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, select

from app.building_blocks.infrastructure.persistence.compiled_statements import CompiledSelect
from app.building_blocks.infrastructure.persistence.database import DbSession
from app.users.application.read_models import ActivityEntry, UserDetails, UserPage
from app.users.domain.user import UserStatus
from app.users.persistence.tables import user_activity_table, users_table

_BY_ID = CompiledSelect(select(users_table).where(users_table.c.id == bindparam("user_id")))
_ACTIVITY = CompiledSelect(
    select(
        user_activity_table.c.event_id,
        user_activity_table.c.event_type,
        user_activity_table.c.occurred_at,
        user_activity_table.c.data,
    )
    .where(user_activity_table.c.user_id == bindparam("user_id"))
    .order_by(user_activity_table.c.occurred_at, user_activity_table.c.event_id)
    .limit(bindparam("limit"))
)


def _details(row: Mapping[Any, Any]) -> UserDetails:
    return UserDetails.model_validate(row)


class SqlAlchemyUserReadModel:
    def __init__(self, session: DbSession) -> None:
        self.session = session

    async def get(self, user_id: UUID) -> UserDetails | None:
        row = await _BY_ID.first(self.session, user_id=user_id)
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
        rows = await _ACTIVITY.all(self.session, user_id=user_id, limit=limit)
        return [ActivityEntry.model_validate(row) for row in rows]
