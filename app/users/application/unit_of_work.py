"""The unit of work the user handlers expect: repository for writes, read model for reads."""

from __future__ import annotations

from typing import Protocol

from app.building_blocks.application.unit_of_work import UnitOfWork
from app.users.application.read_models import UserReadModel
from app.users.domain.repository import UserRepository


class UsersUnitOfWork(UnitOfWork, Protocol):
    @property
    def users(self) -> UserRepository: ...

    @property
    def user_reads(self) -> UserReadModel: ...
