"""The users bounded context, as the composition root sees it: one :class:`BoundedContext`.

The one place that knows which handler serves which request, which unit of work the handlers
share, and what the context publishes and consumes. ``app/contexts.py`` lists it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.building_blocks.bounded_context import BoundedContext
from app.building_blocks.infrastructure.messaging.subscriptions import Subscription
from app.building_blocks.infrastructure.persistence.unit_of_work import CommitHook
from app.users import consumers
from app.users.api.router import router
from app.users.application import handlers
from app.users.application.commands import (
    DeactivateUser,
    DeleteUser,
    ReactivateUser,
    RegisterUser,
    UpdateUserProfile,
)
from app.users.application.queries import GetUser, GetUserActivity, ListUsers
from app.users.integration_events import register_mappings
from app.users.persistence.tables import user_activity_table, users_table
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork

USER = "user"  # the aggregate type of the users' integration events: topic <SERVICE_NAME>.users.v1


def unit_of_work(
    sessions: async_sessionmaker[AsyncSession], hooks: Sequence[CommitHook]
) -> SqlAlchemyUsersUnitOfWork:
    return SqlAlchemyUsersUnitOfWork(sessions, hooks)


context = BoundedContext(
    name="users",
    package="app.users",
    handlers={
        RegisterUser: handlers.RegisterUserHandler,
        UpdateUserProfile: handlers.UpdateUserProfileHandler,
        DeactivateUser: handlers.DeactivateUserHandler,
        ReactivateUser: handlers.ReactivateUserHandler,
        DeleteUser: handlers.DeleteUserHandler,
        GetUser: handlers.GetUserHandler,
        ListUsers: handlers.ListUsersHandler,
        GetUserActivity: handlers.GetUserActivityHandler,
    },
    unit_of_work=unit_of_work,
    routers=[router],
    tables=[users_table, user_activity_table],
    integration_events=register_mappings,
    aggregates=[USER],
    subscriptions=[
        Subscription(consumers.ACTIVITY_CONSUMER, consumers.project_user_activity, aggregates=[USER]),
    ],
)

__all__ = ["USER", "context", "unit_of_work"]
