"""What the use cases return: plain, serialisable views of a user, never the aggregate itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.users.domain.user import User, UserStatus


class UserDetails(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    email: str
    name: str
    status: UserStatus
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_user(cls, user: User) -> UserDetails:
        return cls(
            id=user.id,
            email=str(user.email),
            name=user.name,
            status=user.status,
            created_at=user.created_at,
            updated_at=user.updated_at,
            version=user.version,
        )


class ActivityEntry(BaseModel):
    """One event in a user's activity log."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: str
    occurred_at: datetime
    data: dict[str, Any]


class UserPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[UserDetails]
    next_after: UUID | None


class UserReadModel(Protocol):
    """The query side: reads straight from storage, no aggregate, no change tracking."""

    async def get(self, user_id: UUID) -> UserDetails | None: ...

    async def list(
        self,
        *,
        limit: int,
        after: UUID | None,
        status: UserStatus | None,
        email_prefix: str | None,
    ) -> UserPage: ...

    async def activity(self, user_id: UUID, *, limit: int) -> Sequence[ActivityEntry]:
        """The user's events, oldest first (the log outlives a deleted user)."""
        ...
