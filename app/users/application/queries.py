"""Queries: questions about users. Their handlers never change anything."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from app.building_blocks.application.caching import aggregate_cache_key
from app.building_blocks.application.queries import Query
from app.users.application.read_models import ActivityEntry, UserDetails, UserPage
from app.users.domain.user import User, UserStatus

MAX_PAGE_SIZE = 100


class GetUser(Query[UserDetails]):
    """Cached where a cache is configured: every committed change of the user drops the entry."""

    user_id: UUID

    def cache_key(self) -> str:
        return aggregate_cache_key(User, self.user_id)


class GetUserActivity(Query[list[ActivityEntry]]):
    """What happened to a user, as the activity log projected it from the users topic."""

    user_id: UUID
    limit: int = Field(default=100, ge=1, le=1000)


class ListUsers(Query[UserPage]):
    """Keyset pagination in creation order: ``after`` is the last id of the previous page."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    after: UUID | None = None
    status: UserStatus | None = None
    email_prefix: str | None = None
