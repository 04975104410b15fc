"""The port the use cases need to load and save users."""

from __future__ import annotations

from typing import Protocol

from app.building_blocks.domain.repository import Repository
from app.users.domain.email import Email
from app.users.domain.user import User


class UserRepository(Repository[User], Protocol):
    async def get_by_email(self, email: Email) -> User | None: ...
