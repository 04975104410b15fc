"""Loads and saves ``User`` aggregates; turns the email unique constraint into a domain error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select

from app.building_blocks.infrastructure.persistence.compiled_statements import CompiledSelect
from app.building_blocks.infrastructure.persistence.errors import UniqueConstraintViolation
from app.building_blocks.infrastructure.persistence.repositories import SqlAlchemyRepository
from app.users.domain.email import Email
from app.users.domain.exceptions import EmailAlreadyRegistered
from app.users.domain.user import User, UserStatus
from app.users.persistence.tables import users_table

_BY_EMAIL = CompiledSelect(select(users_table).where(users_table.c.email == bindparam("email")))


class SqlAlchemyUserRepository(SqlAlchemyRepository[User]):
    table = users_table

    def _to_row(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "email": str(user.email),
            "name": user.name,
            "status": user.status.value,
            "created_at": user.created_at,
            "updated_at": user.updated_at,
        }

    def _from_row(self, row: Mapping[str, Any]) -> User:
        return User(
            id=row["id"],
            email=Email(value=row["email"]),
            name=row["name"],
            status=UserStatus(row["status"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )

    async def get_by_email(self, email: Email) -> User | None:
        return await self._load_one(_BY_EMAIL, {"email": str(email)})

    async def add(self, user: User) -> None:
        try:
            await super().add(user)
        except UniqueConstraintViolation as violation:
            raise self._translate(violation, user) from violation

    async def update(self, user: User) -> None:
        try:
            await super().update(user)
        except UniqueConstraintViolation as violation:
            raise self._translate(violation, user) from violation

    @staticmethod
    def _translate(violation: UniqueConstraintViolation, user: User) -> Exception:
        if "email" in violation.columns:
            return EmailAlreadyRegistered(str(user.email))
        return violation
