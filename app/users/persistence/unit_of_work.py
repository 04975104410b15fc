"""The unit of work for the users context: one session shared by repository and read model."""

from __future__ import annotations

from app.building_blocks.infrastructure.persistence.database import DbSession
from app.building_blocks.infrastructure.persistence.unit_of_work import SqlAlchemyUnitOfWork
from app.users.persistence.read_model import SqlAlchemyUserReadModel
from app.users.persistence.repository import SqlAlchemyUserRepository


class SqlAlchemyUsersUnitOfWork(SqlAlchemyUnitOfWork):
    users: SqlAlchemyUserRepository
    user_reads: SqlAlchemyUserReadModel

    def _open(self, session: DbSession) -> None:
        self.users = SqlAlchemyUserRepository(session, self.tracker)
        self.user_reads = SqlAlchemyUserReadModel(session)
