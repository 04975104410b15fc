"""Request and response bodies, named by role: ``UserCreate``, ``UserUpdate``, ``UserPublic``,
``UsersPublic``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from app.users.application.read_models import UserDetails
from app.users.domain.user import NAME_MAX_LENGTH, UserStatus

EMAIL: JsonDict = {"format": "email"}
"""The schema says "an email"; the domain's ``Email`` checks it, once (a second check here would
cost every request the same 20 µs again), with the same 400 ``VALIDATION_ERROR`` on ``email``."""


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"email": "ada@example.com", "name": "Ada"}}
    )

    email: str = Field(max_length=320, json_schema_extra=EMAIL)
    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)


class UserUpdate(BaseModel):
    """Fields to change; omitted fields stay as they are. At least one is required."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"name": "Ada Lovelace"}})

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX_LENGTH)
    email: str | None = Field(default=None, max_length=320, json_schema_extra=EMAIL)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.name is None and self.email is None:
            raise ValueError("give at least one of 'name' or 'email'")
        return self


class UserPublic(BaseModel):
    id: UUID
    email: str
    name: str
    status: UserStatus
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_details(cls, details: UserDetails) -> UserPublic:
        return cls.model_validate(details.model_dump())


class ActivityEntryPublic(BaseModel):
    event_id: str
    event_type: str = Field(examples=["users.user_registered"])
    occurred_at: datetime
    data: dict[str, Any]


class UserActivityPublic(BaseModel):
    items: list[ActivityEntryPublic]


class UsersPublic(BaseModel):
    items: list[UserPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
